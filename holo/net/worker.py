"""The capture worker: a separate process that reads frames, extracts the person and encodes.

Capture and encoding are CPU work; the call's asyncio loop (aiortc's pure-Python SCTP) must not
wait behind them, and two processes use two cores. The worker talks to its parent over a pipe:

- worker -> parent: ``("packet", bytes, info)`` per frame, ``("error", sentence)``, ``("end",)``;
- parent -> worker: ``("credit", n)`` (the parent is ready for n more packets), ``("budget",
  max_points, color_quality)`` (the link's current budget), ``("stop",)``.

Credits bound the pipe: with none left the worker drops the frame (counted) instead of queueing
it — the newest frame always wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from holo.capture import CaptureConfig, CapturePipeline
from holo.errors import CallError, HoloError
from holo.sources import SourceOptions

__all__ = ["REPLAY_PREFIX", "CaptureProcess", "DecodeProcess", "WorkerConfig"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    sources: list[str]
    source_options: SourceOptions
    capture: CaptureConfig
    codec: str = "holo"
    codec_options: dict[str, Any] = field(default_factory=dict)
    fps: float = 30.0
    log_level: int = logging.WARNING
    participant: str = ""  # the name replayed packets are sent under


def _lower_priority() -> None:
    """Workers yield the CPU to the call's event loop: late network handling costs latency for
    every frame, a slower worker only costs frames."""
    with contextlib.suppress(OSError):
        os.nice(4)


def _worker_main(conn: Connection, config: WorkerConfig) -> None:  # runs in the child process
    logging.basicConfig(level=config.log_level, format="%(asctime)s capture %(levelname)s: %(message)s")
    _lower_priority()
    if len(config.sources) == 1 and config.sources[0].startswith(REPLAY_PREFIX):
        _replay_main(conn, config, config.sources[0][len(REPLAY_PREFIX) :])
        return
    from holo.codec import StreamEncoder
    from holo.sources import open_source

    credits = 0
    dropped = 0
    try:
        sources = [open_source(spec, config.source_options) for spec in config.sources]
        pipelines = [CapturePipeline(config.capture) for _ in sources]
        options = dict(config.codec_options)
        encoder = StreamEncoder(config.codec, **options)
        iterators = [iter(s) for s in sources]
        period = 1.0 / config.fps if config.fps > 0 else 0.0
        next_slot = time.monotonic()
        while True:
            while conn.poll():
                msg = conn.recv()
                if msg[0] == "stop":
                    return
                if msg[0] == "credit":
                    credits += int(msg[1])
                elif msg[0] == "budget":
                    _, max_points, quality = msg
                    for p in pipelines:
                        p.config = dataclasses.replace(p.config, max_points=max_points)
                    if (
                        quality is not None
                        and config.codec == "holo"
                        and quality != options.get("color_quality")
                    ):
                        options["color_quality"] = quality
                        encoder = StreamEncoder(config.codec, **options)
            frames = []
            for it in iterators:
                frame = next(it, None)
                if frame is None:
                    conn.send(("end",))
                    return
                frames.append(frame)
            t0 = time.perf_counter()
            # Several cameras are sent as one participant's stream, camera by camera, until fusion
            # by calibration joins them into one cloud.
            for frame, pipeline in zip(frames, pipelines):
                cloud = pipeline.process(frame)
                t1 = time.perf_counter()
                if credits <= 0:  # every frame is encoded on its own: a dropped one need not be
                    dropped += 1
                    continue
                credits -= 1
                packet = encoder.encode_bytes(cloud)
                t2 = time.perf_counter()
                info = {
                    "sequence": cloud.sequence,
                    "capture_time_ns": cloud.capture_time_ns,
                    "points": len(cloud),
                    "capture_ms": (t1 - t0) * 1000,
                    "encode_ms": (t2 - t1) * 1000,
                    "dropped": dropped,
                    "status": cloud.status,
                }
                conn.send(("packet", packet, info))
            if period:
                next_slot += period
                delay = next_slot - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_slot = time.monotonic()
    except HoloError as exc:
        conn.send(("error", str(exc)))
    except (BrokenPipeError, EOFError, KeyboardInterrupt):
        return
    finally:
        for s in locals().get("sources", []):
            s.close()


REPLAY_PREFIX = "replay:"


def _replay_main(conn: Connection, config: WorkerConfig, spec: str) -> None:  # in the child process
    """``--source replay:FILE.mcap[:PARTICIPANT]``: a recorded participant's packets, as recorded
    (no re-encoding, so the link's point budget does not apply), restamped with the current time and
    renamed to this call's participant, at the recorded pace, looped."""
    from holo.record.play import iter_replay_packets, split_replay_spec
    from holo.record.schemas import PacketHeader

    credits = 0
    dropped = 0
    path, who = split_replay_spec(spec)
    try:
        for packet in iter_replay_packets(
            path, who, loop=True, restamp=True, rename=config.participant or None
        ):
            while conn.poll():
                msg = conn.recv()
                if msg[0] == "stop":
                    return
                if msg[0] == "credit":
                    credits += int(msg[1])
            if credits <= 0:
                dropped += 1
                continue
            credits -= 1
            header = PacketHeader.peek(packet)  # sequence and time only: no CRC pass over the packet
            if header is None:
                raise CallError("a replayed packet is not a Holo packet")
            info = {
                "sequence": header.sequence,
                "capture_time_ns": header.capture_time_ns,
                "points": 0,  # not decoded here: replay keeps the recorded bytes
                "capture_ms": 0.0,
                "encode_ms": 0.0,
                "dropped": dropped,
                "status": "replay",
            }
            conn.send(("packet", packet, info))
        conn.send(("end",))
    except HoloError as exc:
        conn.send(("error", str(exc)))
    except (BrokenPipeError, EOFError, KeyboardInterrupt):
        return


class _ChildProcess:
    """A child process joined by a pipe; a reader thread hands its messages to the asyncio loop.

    Both directions go through threads: ``Connection.recv`` blocks until a big message's last
    piece is written and ``Connection.send`` blocks while the pipe is full, and the event loop
    (aiortc's SCTP, timers) must never wait for a child. Outgoing messages queue (at most 8;
    ``send`` returns False when full).
    """

    name = "holo-child"

    def __init__(
        self,
        target: Callable[..., None],
        args: tuple[Any, ...],
        on_message: Callable[[tuple[Any, ...]], None],
    ) -> None:
        self.on_message = on_message
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe(duplex=True)
        self._process = ctx.Process(target=target, args=(child, *args), name=self.name, daemon=True)
        self._child = child
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: threading.Thread | None = None
        self._outbox: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=8)
        self._writer: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._process.start()
        self._child.close()
        self._loop = loop
        self._reader = threading.Thread(target=self._read, name=f"{self.name}-reader", daemon=True)
        self._reader.start()
        self._writer = threading.Thread(target=self._write, name=f"{self.name}-writer", daemon=True)
        self._writer.start()

    def _write(self) -> None:
        while True:
            msg = self._outbox.get()
            if msg is None:
                return
            try:
                self._conn.send(msg)
            except (BrokenPipeError, OSError):
                return

    def _read(self) -> None:
        while True:
            try:
                msg = self._conn.recv()
            except (EOFError, OSError):
                msg = ("exit",)
            loop = self._loop
            if loop is None or loop.is_closed():
                return
            try:
                loop.call_soon_threadsafe(self.on_message, msg)
            except RuntimeError:  # the loop closed meanwhile
                return
            if msg[0] == "exit":
                return

    def send(self, msg: tuple[Any, ...]) -> bool:
        try:
            self._outbox.put_nowait(msg)
        except queue.Full:
            return False
        return True

    def stop(self, timeout_s: float = 3.0) -> None:
        self._loop = None
        with contextlib.suppress(queue.Full):
            self._outbox.put(("stop",), timeout=1.0)
        with contextlib.suppress(queue.Full):
            self._outbox.put(None, timeout=1.0)
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(1.0)
        self._conn.close()


class CaptureProcess(_ChildProcess):
    """The capture worker's handle: packets arrive through ``on_message``; ``credit`` and
    ``set_budget`` steer it."""

    name = "holo-capture"

    def __init__(self, config: WorkerConfig, on_message: Callable[[tuple[Any, ...]], None]) -> None:
        super().__init__(_worker_main, (config,), on_message)

    def start(self, loop: asyncio.AbstractEventLoop, credits: int = 2) -> None:
        super().start(loop)
        self.credit(credits)

    def credit(self, n: int = 1) -> None:
        self.send(("credit", n))

    def set_budget(self, max_points: int | None, color_quality: int | None = None) -> None:
        self.send(("budget", max_points, color_quality))


def _decoder_main(conn: Connection, bus_address: str | None, log_level: int) -> None:  # child process
    """Decode received packets; publish the good ones on the bus; report each outcome."""
    logging.basicConfig(level=log_level, format="%(asctime)s decode %(levelname)s: %(message)s")
    _lower_priority()
    from holo.bus import Bus, cloud_topic
    from holo.codec import Packet, StreamDecoder

    decoder = StreamDecoder()
    _warm_up()
    bus = Bus(bus_address)
    publisher = bus.publisher()
    try:
        while True:
            msg = conn.recv()
            if msg[0] == "stop":
                return
            _, data, offset_ns = msg
            try:  # the call already refused a packet naming someone other than the peer
                packet = Packet.parse(data, decoder.limits)
                cloud = decoder.decode(packet)
            except HoloError as exc:
                conn.send(("refused", str(exc)))
                continue
            decoded_ns = time.time_ns()
            publisher.send(cloud_topic(packet.participant), data)
            latency_ms = (decoded_ns - (cloud.capture_time_ns - offset_ns)) / 1e6
            conn.send(("decoded", cloud.sequence, decoded_ns, latency_ms, len(cloud)))
    except (EOFError, OSError, KeyboardInterrupt):
        return
    finally:
        bus.close()


def _warm_up() -> None:
    """Load the codecs' compiled kernels now, not when the first frame arrives."""
    import numpy as np

    from holo.codec import StreamEncoder
    from holo.frame import Intrinsics, PersonCloud

    k = Intrinsics(width=4, height=4, fx=4.0, fy=4.0, cx=1.5, cy=1.5)
    pixels = np.array([[1, 1], [2, 1], [1, 2]], np.uint16)
    cloud = PersonCloud(
        points_m=np.ones((3, 3), np.float32),
        colors=np.zeros((3, 3), np.uint8),
        capture_time_ns=0,
        sequence=0,
        participant="warm-up",
        intrinsics=k,
        pixels=pixels,
        depth_unit_m=0.001,
    )
    try:
        from holo.codec import StreamDecoder

        StreamDecoder().decode(StreamEncoder("holo").encode_bytes(cloud))
    except HoloError:
        pass


class DecodeProcess(_ChildProcess):
    """Decodes the peer's packets in its own process (its own core, no GIL shared with aiortc)."""

    name = "holo-decode"

    def __init__(
        self, bus_address: str | None, log_level: int, on_message: Callable[[tuple[Any, ...]], None]
    ) -> None:
        super().__init__(_decoder_main, (bus_address, log_level), on_message)

    def decode(self, data: bytes, offset_ns: int) -> bool:
        return self.send(("decode", data, offset_ns))
