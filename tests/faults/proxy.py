"""A loopback TCP fault proxy: put it between a real process and what it talks to, then break the link.

    proxy = FaultProxy("127.0.0.1", 5432).start()     # listens on 127.0.0.1:<free port>
    url = f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/db"
    proxy.blackhole()      # every connection, old and new, stops moving; the process sees silence
    proxy.normal()         # the link is back: stalled bytes flow again, as after a network partition

Modes (switchable at run time; live connections follow within POLL_SECONDS):

- normal      forward bytes as they come.
- delay(s)    add `s` seconds per round trip: a client→server chunk that follows an answer (or opens
              the conversation) waits `s` before it is forwarded — what a far-away region looks like.
- hang        accept and read, never answer: what the client sends is read and thrown away, nothing
              comes back. Connections that hung are reset when the mode changes (their byte stream is
              broken), as when a wedged server is restarted.
- reset       every connection, live and new, is closed with a TCP RST (SO_LINGER 0).
- blackhole   accept and never read or answer; bytes stay in the kernel's buffers until the mode
              changes, then flow again (a partition that heals).
- drip(bps)   forward at most `bps` bytes per second in both directions, in small pieces.

`drop()` resets the connections that are live now and leaves the mode alone (a link that broke once).

It only ever listens on and connects to 127.0.0.0/8 (asserted), holds at most `max_connections`
connections (more are reset), reads at most CHUNK bytes at a time, and `stop()` ends every thread.
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import select
import socket
import struct
import threading
from dataclasses import dataclass
from types import TracebackType

POLL_SECONDS = 0.02
CHUNK = 64 * 1024
CONNECT_TIMEOUT = 2.0
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


class Mode(enum.Enum):
    NORMAL = "normal"
    DELAY = "delay"
    HANG = "hang"
    RESET = "reset"
    BLACKHOLE = "blackhole"
    DRIP = "drip"


@dataclass(frozen=True)
class _Setting:
    mode: Mode
    delay: float = 0.0
    bytes_per_second: int = 0


def assert_loopback(host: str) -> str:
    """The IPv4 loopback address `host` names; anything that resolves outside 127.0.0.0/8 is refused."""
    infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    addresses = {str(info[4][0]) for info in infos}
    outside = sorted(a for a in addresses if ipaddress.ip_address(a) not in LOOPBACK)
    if not addresses or outside:
        raise ValueError(f"the fault proxy only talks to 127.0.0.0/8; {host!r} resolves to {sorted(addresses)}")
    return sorted(addresses)[0]


def _rst(sock: socket.socket | None) -> None:
    """Close with a TCP RST instead of a FIN: SO_LINGER on with a zero timeout."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, *, max_connections: int = 64) -> None:
        self.target = (assert_loopback(target_host), int(target_port))
        self.max_connections = max_connections
        self._setting = _Setting(Mode.NORMAL)
        self._generation = 0  # drop() bumps it: links from an older generation reset themselves
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self.accepted = 0  # connections accepted since start
        self.refused = 0  # connections reset on arrival (reset mode, or over max_connections)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(POLL_SECONDS * 5)
        self.host, self.port = "127.0.0.1", int(self._listener.getsockname()[1])
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"fault-proxy-{self.port}", daemon=True)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop accepting, reset every connection, and wait (bounded) for every thread to end."""
        self._stop.set()
        self._acceptor.join(5)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """Connections being served now."""
        with self._lock:
            return len(self._threads)

    @property
    def mode(self) -> Mode:
        return self._setting.mode

    # -- modes --------------------------------------------------------------------------------
    def normal(self) -> None:
        self._setting = _Setting(Mode.NORMAL)

    def delay(self, seconds: float) -> None:
        if not 0 < seconds <= 60:
            raise ValueError("delay is between 0 and 60 seconds")
        self._setting = _Setting(Mode.DELAY, delay=seconds)

    def hang(self) -> None:
        self._setting = _Setting(Mode.HANG)

    def reset(self) -> None:
        self._setting = _Setting(Mode.RESET)

    def blackhole(self) -> None:
        self._setting = _Setting(Mode.BLACKHOLE)

    def drop(self) -> None:
        """Reset every live connection now (a dropped link); new connections are served per the mode."""
        with self._lock:
            self._generation += 1

    def drip(self, bytes_per_second: int) -> None:
        if not 1 <= bytes_per_second <= 10_000_000:
            raise ValueError("drip rate is between 1 and 10,000,000 bytes per second")
        self._setting = _Setting(Mode.DRIP, bytes_per_second=bytes_per_second)

    # -- machinery ----------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                full = len(self._threads) >= self.max_connections
            if full or self._setting.mode is Mode.RESET:
                self.refused += 1
                _rst(client)
                continue
            self.accepted += 1
            thread = threading.Thread(target=self._serve, args=(client,), name=f"fault-proxy-{self.port}-conn")
            thread.daemon = True
            with self._lock:
                self._threads.add(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        link = _Link(self, client)
        try:
            link.run()
        except OSError:
            pass
        finally:
            link.close()
            with self._lock:
                self._threads.discard(threading.current_thread())


class _Link:
    """One proxied connection: a client socket, and the upstream socket once the link lets it connect."""

    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.hung = False  # read-and-discarded bytes: this stream can never be whole again
        self.client_eof = self.upstream_eof = False
        self.answered = True  # the last bytes went server→client: the next client chunk starts a round trip
        self.rst = False
        self.generation = proxy._generation

    def run(self) -> None:
        stop = self.proxy._stop
        while not stop.is_set():
            setting = self.proxy._setting
            dropped = self.generation != self.proxy._generation
            if dropped or setting.mode is Mode.RESET or (self.hung and setting.mode is not Mode.HANG):
                self.rst = True
                return
            if setting.mode is Mode.BLACKHOLE:
                stop.wait(POLL_SECONDS)
                continue
            if setting.mode is Mode.HANG:
                self._swallow()
                continue
            if self.upstream is None:
                self.upstream = self._connect()
                if self.upstream is None:
                    self.rst = True
                    return
            if not self._pump(setting):
                return

    def _connect(self) -> socket.socket | None:
        host, port = self.proxy.target
        assert ipaddress.ip_address(host) in LOOPBACK, host  # never anywhere but loopback
        try:
            return socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
        except OSError:
            return None

    def _swallow(self) -> None:
        readable, _, _ = select.select([self.client], [], [], POLL_SECONDS)
        if readable:
            data = self.client.recv(CHUNK)
            if data:
                self.hung = True
            else:
                self.client_eof = True
                self.proxy._stop.wait(POLL_SECONDS)

    def _pump(self, setting: _Setting) -> bool:
        """Move what is ready; False when both directions have ended."""
        assert self.upstream is not None
        sources = [s for s, eof in ((self.client, self.client_eof), (self.upstream, self.upstream_eof)) if not eof]
        if not sources:
            return False
        readable, _, _ = select.select(sources, [], [], POLL_SECONDS)
        for source in readable:
            to_upstream = source is self.client
            target = self.upstream if to_upstream else self.client
            data = source.recv(CHUNK)
            if not data:
                if to_upstream:
                    self.client_eof = True
                else:
                    self.upstream_eof = True
                with contextlib.suppress(OSError):
                    target.shutdown(socket.SHUT_WR)
                continue
            delayed = setting.mode is Mode.DELAY and to_upstream and self.answered
            if delayed and self.proxy._stop.wait(setting.delay):
                return False
            self.answered = not to_upstream
            if setting.mode is Mode.DRIP:
                self._drip(target, data, setting.bytes_per_second)
            else:
                target.sendall(data)
        return True

    def _drip(self, target: socket.socket, data: bytes, bytes_per_second: int) -> None:
        piece = max(1, int(bytes_per_second * POLL_SECONDS))
        for start in range(0, len(data), piece):
            if self.proxy._stop.is_set():
                return
            part = data[start : start + piece]
            target.sendall(part)
            if self.proxy._stop.wait(len(part) / bytes_per_second):
                return

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            if self.rst or self.proxy._stop.is_set():
                _rst(sock)
            elif sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
