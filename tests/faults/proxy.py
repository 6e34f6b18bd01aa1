"""A loopback TCP proxy with nemesis controls: cut, delay or drop traffic, per direction or connection.

One selector thread moves bytes for every connection. Each direction has a bounded
queue of (ready_at, chunk): when it is full the proxy stops reading that side, so
TCP back-pressure (not memory) absorbs a cut. A cut holds the bytes until healed.
"""

from __future__ import annotations

import contextlib
import random
import selectors
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field

BUFFER_LIMIT = 256 * 1024  # bytes queued per direction before the proxy stops reading
CHUNK = 64 * 1024
TICK = 0.01  # selector timeout: how often delayed chunks are looked at

UP = "up"  # client -> server
DOWN = "down"  # server -> client


@dataclass
class Faults:
    """What a connection suffers now: directions cut, and an added delay."""

    cut: set[str] = field(default_factory=set)
    delay: float = 0.0


@dataclass
class _Pipe:
    """One direction of a connection: bytes read from ``source`` wait here for ``sink``."""

    source: socket.socket
    sink: socket.socket
    queue: deque[tuple[float, bytes]] = field(default_factory=deque)
    size: int = 0
    eof: bool = False


class _Connection:
    def __init__(self, client: socket.socket, upstream: socket.socket, faults: Faults) -> None:
        self.pipes = {UP: _Pipe(client, upstream), DOWN: _Pipe(upstream, client)}
        self.faults = faults
        self.closed = False


class Proxy:
    """Forward 127.0.0.1:``port`` (chosen when 0) to 127.0.0.1:``target``, with faults on demand."""

    def __init__(self, target: int, port: int = 0) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", port))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._default = Faults()  # faults applied to every connection, new ones included
        self._connections: list[_Connection] = []
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"proxy-{self.port}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ nemesis
    def cut(self, directions: tuple[str, ...] = (UP, DOWN), one: random.Random | None = None) -> None:
        """Hold bytes in ``directions``: on every connection, or (with ``one``) one chosen at random."""
        with self._lock:
            for faults in self._targets(one):
                faults.cut.update(directions)
        self._wake()

    def delay(self, seconds: float, one: random.Random | None = None) -> None:
        """Forward each chunk ``seconds`` after it was read (all connections, or one at random)."""
        with self._lock:
            for faults in self._targets(one):
                faults.delay = seconds
        self._wake()

    def drop(self, one: random.Random | None = None) -> int:
        """Close connections (all, or one at random) on both sides; returns how many."""
        with self._lock:
            victims = [c for c in self._connections if not c.closed]
            if one is not None and victims:
                victims = [one.choice(victims)]
            for connection in victims:
                connection.closed = True  # the loop closes the sockets
        self._wake()
        return len(victims)

    def heal(self) -> None:
        """Forward everything again, without delay."""
        with self._lock:
            self._default.cut.clear()
            self._default.delay = 0.0
            for connection in self._connections:
                connection.faults.cut.clear()
                connection.faults.delay = 0.0
        self._wake()

    @property
    def connections(self) -> int:
        with self._lock:
            return sum(1 for c in self._connections if not c.closed)

    def stop(self, timeout: float = 5.0) -> None:
        """Close every socket and end the thread (again: nothing)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._wake()
        self._thread.join(timeout)
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()

    def _targets(self, one: random.Random | None) -> list[Faults]:
        live = [c for c in self._connections if not c.closed]
        if one is None:
            return [self._default] + [c.faults for c in live]
        return [one.choice(live).faults] if live else []

    def _wake(self) -> None:
        # A full wake pipe already wakes the loop; a closed one means stopped.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    # --------------------------------------------------------------- loop
    def _run(self) -> None:
        self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self._stopping.is_set():
                self._register_interest()
                for key, mask in self._selector.select(TICK):
                    self._ready(key.data, key.fileobj, mask)
                self._flush()
        finally:
            with self._lock:
                for connection in self._connections:
                    connection.closed = True
            self._reap()

    def _ready(self, data: object, sock: object, mask: int) -> None:
        if data == "accept":
            self._accept()
        elif data == "wake":
            try:
                while self._wake_r.recv(4096):
                    pass
            except BlockingIOError:
                pass
        elif isinstance(data, _Connection) and mask & selectors.EVENT_READ and isinstance(sock, socket.socket):
            self._read(data, sock)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=1.0)
        except OSError:
            client.close()  # nothing listens behind us: the client sees a dropped connection
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            faults = Faults(set(self._default.cut), self._default.delay)
            self._connections.append(_Connection(client, upstream, faults))

    def _register_interest(self) -> None:
        self._reap()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            for pipe in connection.pipes.values():
                wanted = not pipe.eof and pipe.size < BUFFER_LIMIT
                registered = self._selector.get_map().get(pipe.source.fileno()) is not None
                if wanted and not registered:
                    self._selector.register(pipe.source, selectors.EVENT_READ, connection)
                elif not wanted and registered:
                    self._selector.unregister(pipe.source)

    def _read(self, connection: _Connection, sock: socket.socket) -> None:
        pipe = connection.pipes[UP] if sock is connection.pipes[UP].source else connection.pipes[DOWN]
        try:
            chunk = sock.recv(CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            pipe.eof = True
            connection.closed = True  # half-closes are not worth modelling: drop the pair
            return
        pipe.queue.append((time.monotonic() + connection.faults.delay, chunk))
        pipe.size += len(chunk)

    def _flush(self) -> None:
        now = time.monotonic()
        with self._lock:
            connections = [c for c in self._connections if not c.closed]
        for connection in connections:
            for direction, pipe in connection.pipes.items():
                if direction in connection.faults.cut:
                    continue
                while pipe.queue and pipe.queue[0][0] <= now:
                    ready_at, chunk = pipe.queue.popleft()
                    try:
                        sent = pipe.sink.send(chunk)
                    except BlockingIOError:
                        sent = 0
                    except OSError:
                        connection.closed = True
                        break
                    pipe.size -= sent
                    if sent < len(chunk):
                        pipe.queue.appendleft((ready_at, chunk[sent:]))
                        break

    def _reap(self) -> None:
        with self._lock:
            dead = [c for c in self._connections if c.closed]
            self._connections = [c for c in self._connections if not c.closed]
        for connection in dead:
            for pipe in connection.pipes.values():
                if self._selector.get_map().get(pipe.source.fileno()) is not None:
                    self._selector.unregister(pipe.source)
                pipe.source.close()
