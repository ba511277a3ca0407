"""The demo's AWS in a process of its own: moto's server on a free loopback port, seeded with the demo's locks.

`tflock-bot demo` starts it first, so moto loads and the locks are written on one core while the bot starts
on the other (and AWS calls never compete with the bot for one interpreter lock). It prints its endpoint
URL on one line once seeded, then serves until its standard input closes — when the demo stops, or dies.
"""

from __future__ import annotations

import logging
import signal
import sys
from datetime import UTC, datetime


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the demo stops us itself
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    import boto3  # noqa: PLC0415
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    from bot.demo import world  # noqa: PLC0415

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        url = f"http://{host}:{port}"
        s3 = boto3.client("s3", region_name=world.REGION, endpoint_url=url)
        dynamodb = boto3.client("dynamodb", region_name=world.REGION, endpoint_url=url)
        world.seed(s3, dynamodb, datetime.now(UTC))
        print(url, flush=True)
        sys.stdin.read()  # the demo holds the other end: EOF when it stops or dies
    finally:
        moto.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
