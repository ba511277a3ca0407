"""The fault proxy itself, against a loopback echo server: each mode does what it says, and stops cleanly."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.faults.proxy import FaultProxy, Mode

pytestmark = [pytest.mark.slow, pytest.mark.faults]


@pytest.fixture
def echo() -> Iterator[int]:
    """A loopback server that echoes every chunk back, one thread per connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    done = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(4096):
                conn.sendall(data)

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    done.set()
    thread.join(5)
    listener.close()


@pytest.fixture
def proxy(echo: int) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", echo) as proxy:
        yield proxy


def connect(proxy: FaultProxy, timeout: float = 2.0) -> socket.socket:
    return socket.create_connection((proxy.host, proxy.port), timeout=timeout)


def round_trip(sock: socket.socket, data: bytes = b"ping") -> bytes:
    sock.sendall(data)
    received = b""
    while len(received) < len(data):
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return received


def test_normal_forwards_both_ways(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        assert round_trip(sock, b"hello") == b"hello"
        assert round_trip(sock, b"x" * 200_000) == b"x" * 200_000
    assert proxy.accepted == 1


def test_delay_is_added_per_round_trip(proxy: FaultProxy) -> None:
    proxy.delay(0.3)
    with connect(proxy) as sock:
        started = time.monotonic()
        assert round_trip(sock) == b"ping"
        assert round_trip(sock) == b"ping"
        assert time.monotonic() - started >= 0.6


def test_hang_reads_and_never_answers_then_resets(proxy: FaultProxy) -> None:
    with connect(proxy, timeout=0.3) as sock:
        assert round_trip(sock) == b"ping"
        proxy.hang()
        time.sleep(0.1)
        sock.sendall(b"lost")
        with pytest.raises(TimeoutError):
            sock.recv(10)
        proxy.normal()  # the hung stream lost bytes: it is reset, never silently resumed
        sock.settimeout(2)
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
    with connect(proxy) as fresh:
        assert round_trip(fresh) == b"ping"


def test_reset_sends_rst_to_live_and_new_connections(proxy: FaultProxy) -> None:
    with connect(proxy) as live:
        assert round_trip(live) == b"ping"
        proxy.reset()
        with pytest.raises(ConnectionResetError):
            live.recv(10)
    with pytest.raises((ConnectionResetError, BrokenPipeError)), connect(proxy) as new:
        round_trip(new)
    assert proxy.refused >= 1


def test_drop_resets_live_connections_only(proxy: FaultProxy) -> None:
    with connect(proxy) as live:
        assert round_trip(live) == b"ping"
        proxy.drop()
        with pytest.raises(ConnectionResetError):
            live.recv(10)
    with connect(proxy) as new:
        assert round_trip(new) == b"ping"
    assert proxy.mode is Mode.NORMAL


def test_blackhole_stalls_then_heals(proxy: FaultProxy) -> None:
    with connect(proxy, timeout=0.3) as sock:
        assert round_trip(sock) == b"ping"
        proxy.blackhole()
        time.sleep(0.1)
        sock.sendall(b"held")
        with pytest.raises(TimeoutError):
            sock.recv(10)
        with connect(proxy, timeout=0.3) as new:  # accepted, never answered
            new.sendall(b"new")
            with pytest.raises(TimeoutError):
                new.recv(10)
            proxy.normal()
            new.settimeout(2)
            assert new.recv(10) == b"new"
        sock.settimeout(2)
        assert sock.recv(10) == b"held"


def test_drip_forwards_slowly_and_whole(proxy: FaultProxy) -> None:
    proxy.drip(1000)
    with connect(proxy) as sock:
        started = time.monotonic()
        assert round_trip(sock, b"d" * 200) == b"d" * 200
        assert time.monotonic() - started >= 0.3  # 200 bytes each way at 1000 B/s


def test_bounded_connections(echo: int) -> None:
    with FaultProxy("127.0.0.1", echo, max_connections=2) as proxy:
        held = [connect(proxy) for _ in range(2)]
        for sock in held:
            assert round_trip(sock) == b"ping"
        with pytest.raises((ConnectionResetError, BrokenPipeError)), connect(proxy) as extra:
            round_trip(extra)
        for sock in held:
            sock.close()


def test_stop_ends_every_connection(echo: int) -> None:
    proxy = FaultProxy("127.0.0.1", echo).start()
    proxy.blackhole()
    sock = connect(proxy)
    deadline = time.monotonic() + 2
    while proxy.connections < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    proxy.stop()
    assert time.monotonic() - started < 2
    assert proxy.connections == 0
    assert proxy.mode is Mode.BLACKHOLE
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((proxy.host, proxy.port), timeout=1)
    sock.close()


@pytest.mark.parametrize("host", ["10.0.0.1", "192.168.1.1", "0.0.0.0", "8.8.8.8"])  # noqa: S104
def test_never_leaves_loopback(host: str) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        FaultProxy(host, 80)
