"""The local bus: ZMQ publish/subscribe between Holo processes, through one small forwarder.

Publishers connect to the forwarder's input, subscribers to its output; the forwarder is ZMQ's
XSUB/XPUB proxy. Topics are ``holo/<participant>/cloud`` (packet bytes), ``holo/<participant>/audio``,
``holo/<participant>/stats`` (JSON), ``holo/headpose`` (JSON) and so on; a message is two frames,
topic and payload.

Address: ``--bus ADDR`` or ``$HOLO_BUS``, default ``tcp://127.0.0.1:7755``. For ``tcp://HOST:PORT``
publishers use PORT and subscribers PORT+1; for ``ipc://PATH`` they use ``PATH.in`` and ``PATH.out``.

Nobody has to start the forwarder by hand: every process that opens the bus with ``serve=True``
(all Holo commands do) runs a guard thread that tries to take a lock file for the address; the
one holding it binds and runs the forwarder. If that process exits the kernel frees the lock,
another guard takes over within half a second and ZMQ's sockets reconnect by themselves, so the
bus outlives any one command. ``holo bus`` runs a forwarder on its own for rigs that want one.

Everything is bounded: sockets have high-water marks (ZMQ drops beyond them and the publisher
counts what it could not queue); sends never block.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass

import zmq

from holo.errors import BusError, ConfigError

__all__ = [
    "DEFAULT_BUS",
    "Bus",
    "Publisher",
    "Subscriber",
    "bus_endpoints",
    "cloud_topic",
    "resolve_bus",
    "run_forwarder",
]

logger = logging.getLogger(__name__)

DEFAULT_BUS = "tcp://127.0.0.1:7755"
HIGH_WATER_MARK = 64


def resolve_bus(address: str | None = None) -> str:
    return address or os.environ.get("HOLO_BUS") or DEFAULT_BUS


def cloud_topic(participant: str) -> str:
    return f"holo/{participant}/cloud"


def bus_endpoints(address: str) -> tuple[str, str]:
    """(publisher endpoint, subscriber endpoint) of a bus address."""
    if address.startswith("tcp://"):
        host, _, port = address[6:].rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65534:
            raise ConfigError(f"bus address {address!r} must look like tcp://HOST:PORT (PORT 1–65534)")
        return f"tcp://{host}:{port}", f"tcp://{host}:{int(port) + 1}"
    if address.startswith("ipc://") and len(address) > 6:
        return f"{address}.in", f"{address}.out"
    raise ConfigError(f"bus address {address!r} must be tcp://HOST:PORT or ipc://PATH")


def _lock_path(address: str) -> str:
    digest = hashlib.sha1(address.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"holo-bus-{os.getuid()}-{digest}.lock")


@dataclass
class _Stats:
    sent: int = 0
    dropped: int = 0


class Forwarder:
    """An XSUB/XPUB proxy in a thread; ``guard=True`` keeps trying to take over a vacant bus."""

    def __init__(self, address: str, context: zmq.Context, *, guard: bool = True) -> None:
        self.address = address
        self.context = context
        self._stop = threading.Event()
        self._serving = threading.Event()
        self._lock_file: int | None = None
        self._control = f"inproc://holo-forwarder-{id(self)}"
        self._thread = threading.Thread(target=self._run, name="holo-bus-forwarder", daemon=True)
        self._guard = guard
        self._thread.start()

    @property
    def serving(self) -> bool:
        return self._serving.is_set()

    def wait_serving(self, timeout_s: float) -> bool:
        return self._serving.wait(timeout_s)

    def _try_lock(self) -> bool:
        fd = os.open(_lock_path(self.address), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_file = fd
        return True

    def _run(self) -> None:
        pub_ep, sub_ep = bus_endpoints(self.address)
        while not self._stop.is_set():
            if not self._try_lock():
                if not self._guard:
                    return
                self._stop.wait(0.5)
                continue
            xsub = self.context.socket(zmq.XSUB)
            xpub = self.context.socket(zmq.XPUB)
            control = self.context.socket(zmq.PAIR)
            for s in (xsub, xpub, control):
                s.setsockopt(zmq.LINGER, 0)
            xsub.setsockopt(zmq.RCVHWM, HIGH_WATER_MARK * 4)
            xpub.setsockopt(zmq.SNDHWM, HIGH_WATER_MARK * 4)
            try:
                xsub.bind(pub_ep)
                xpub.bind(sub_ep)
                control.bind(self._control)
            except zmq.ZMQError as exc:
                logger.warning("bus %s: cannot bind the forwarder (%s); retrying", self.address, exc)
                for s in (xsub, xpub, control):
                    s.close()
                self._release()
                self._stop.wait(1.0)
                continue
            logger.info("bus forwarder serving %s (publishers) and %s (subscribers)", pub_ep, sub_ep)
            self._serving.set()
            try:
                zmq.proxy_steerable(xsub, xpub, None, control)
            except zmq.ZMQError as exc:
                if exc.errno != zmq.ETERM:
                    logger.warning("bus forwarder stopped: %s", exc)
            finally:
                self._serving.clear()
                for s in (xsub, xpub, control):
                    s.close()
                self._release()
            return

    def _release(self) -> None:
        if self._lock_file is not None:
            os.close(self._lock_file)
            self._lock_file = None

    def close(self) -> None:
        self._stop.set()
        if self._serving.is_set():
            ctl = self.context.socket(zmq.PAIR)
            ctl.setsockopt(zmq.LINGER, 0)
            ctl.connect(self._control)
            ctl.send(b"TERMINATE")
            ctl.close()
        self._thread.join(timeout=2.0)


class Publisher:
    """Publishes (topic, payload) messages; never blocks, counts what the bus could not take."""

    def __init__(self, context: zmq.Context, endpoint: str) -> None:
        self.socket = context.socket(zmq.PUB)
        self.socket.setsockopt(zmq.LINGER, 200)
        self.socket.setsockopt(zmq.SNDHWM, HIGH_WATER_MARK)
        self.socket.connect(endpoint)
        self.stats = _Stats()

    def send(self, topic: str, payload: bytes) -> bool:
        try:
            self.socket.send_multipart(
                [topic.encode(), payload], flags=zmq.NOBLOCK, copy=len(payload) < 65536
            )
        except zmq.Again:
            self.stats.dropped += 1
            return False
        self.stats.sent += 1
        return True

    def close(self) -> None:
        self.socket.close()


class Subscriber:
    """Receives messages whose topic starts with one of ``prefixes``."""

    def __init__(self, context: zmq.Context, endpoint: str, prefixes: list[str]) -> None:
        self.socket = context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVHWM, HIGH_WATER_MARK)
        for p in prefixes or [""]:
            self.socket.setsockopt(zmq.SUBSCRIBE, p.encode())
        self.socket.connect(endpoint)

    def recv(self, timeout_s: float | None = None) -> tuple[str, bytes] | None:
        """The next message, or None after ``timeout_s`` (None waits forever, 0 polls)."""
        if timeout_s is not None and not self.socket.poll(int(timeout_s * 1000)):
            return None
        parts = self.socket.recv_multipart()
        if len(parts) != 2:
            logger.warning("dropped a bus message with %d frames (expected topic + payload)", len(parts))
            return None
        return parts[0].decode("utf-8", errors="replace"), parts[1]

    def close(self) -> None:
        self.socket.close()


class Bus:
    """One process's handle on the bus: a ZMQ context, the forwarder guard, and socket factories."""

    def __init__(self, address: str | None = None, *, serve: bool = True) -> None:
        self.address = resolve_bus(address)
        self.pub_endpoint, self.sub_endpoint = bus_endpoints(self.address)
        self.context = zmq.Context()
        self.forwarder = Forwarder(self.address, self.context) if serve else None
        self._sockets: list[Publisher | Subscriber] = []

    def publisher(self) -> Publisher:
        p = Publisher(self.context, self.pub_endpoint)
        self._sockets.append(p)
        return p

    def subscriber(self, prefixes: list[str] | None = None) -> Subscriber:
        s = Subscriber(self.context, self.sub_endpoint, prefixes or ["holo/"])
        self._sockets.append(s)
        return s

    def wait_ready(self, timeout_s: float = 3.0) -> None:
        """Wait until some process serves this bus (ours or another's)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.forwarder is not None and self.forwarder.serving:
                return
            fd = os.open(_lock_path(self.address), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                held_elsewhere = False
            except OSError:
                held_elsewhere = True
            finally:
                os.close(fd)
            if held_elsewhere and (self.forwarder is None or not self.forwarder.serving):
                return
            time.sleep(0.05)
        raise BusError(
            f"no forwarder is serving the bus {self.address} (is another program using its ports?)"
        )

    def close(self) -> None:
        for s in self._sockets:
            s.close()
        self._sockets.clear()
        if self.forwarder is not None:
            self.forwarder.close()
        self.context.term()

    def __enter__(self) -> Bus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_forwarder(address: str | None = None) -> None:
    """Serve the bus in the foreground until interrupted (``holo bus``)."""
    bus = Bus(address, serve=True)
    try:
        if bus.forwarder is not None and not bus.forwarder.wait_serving(3.0):
            raise BusError(f"another process already serves the bus {bus.address}")
        while True:
            time.sleep(3600)
    finally:
        bus.close()
