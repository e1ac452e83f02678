"""The recorder: everything on the bus into one MCAP file, safe against crashes and full disks.

:class:`Recorder` subscribes to the bus (by default to every ``holo/`` topic) and writes each
message, as received, to an MCAP file (see :mod:`holo.record.schemas` for the channels). It runs in
a thread of its own, so ``holo call --record`` runs it in-process; ``holo record`` runs it alone.

Choices:

- **Flush policy.** Messages gather in an MCAP chunk that is closed (zstd-compressed and written
  with its message index) once it is ``chunk_period_s`` (0.5 s) old, or at ``CHUNK_BYTES``, even
  when no further message arrives. The file is opened without a user-space buffer, so a closed
  chunk is in the kernel the moment it is written; a helper thread ``fsync``\\s the file every
  ``sync_period_s`` (1 s) for power loss. A ``kill -9`` therefore loses at most the open chunk:
  under ``chunk_period_s`` plus the time to compress it (measured: see tests/test_record.py).
- **Metadata.** An MCAP Metadata record ``holo.session`` is written first (format, start time,
  host, bus, note, the recorder's pid and clocks), and ``holo.session.end`` last (end time,
  duration, why it stopped, participants, codecs, frames and sequence gaps per participant, each
  participant's last clock offset from its stats). A killed recorder leaves no end record; the
  reader rebuilds the same facts from the messages.
- **Calibration** (``calibration=FILE``) is stored as an MCAP Attachment of the file's bytes, with
  media type ``application/json``.
- **Errors.** A path that cannot be written (missing directory, read-only, a directory, an existing
  file without ``overwrite``) raises :class:`RecordingError` from :meth:`Recorder.start`, before
  anything is recorded. A full disk stops the recording: the file is cut back to the last whole
  record, so it stays readable, and :meth:`Recorder.stop` raises "the disk holding FILE is full;
  recording stopped after N s".
- **Bounded.** The subscription queues at most ``RECEIVE_HWM`` messages (ZMQ drops beyond it);
  sequence gaps in each participant's packets are counted and stored in the end metadata.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any, cast

import zmq
from mcap.writer import CompressionType, Writer

import holo
from holo.bus import Bus
from holo.errors import RecordingError
from holo.net.audio import AUDIO_HEADER
from holo.record.schemas import (
    MAX_CODECS,
    RECORDING_FORMAT,
    SESSION_END_METADATA,
    SESSION_METADATA,
    ChannelSpec,
    PacketHeader,
    channel_spec,
    codec_name,
    sequence_gap,
)

__all__ = ["Recorder", "RecordingReport"]

logger = logging.getLogger(__name__)

CHUNK_BYTES = 8 * 1024 * 1024
RECEIVE_HWM = 512
_DRAIN_BATCH = 256


@dataclass(frozen=True, slots=True)
class RecordingReport:
    """What a finished (or failed) recording holds."""

    path: str
    duration_s: float
    messages: int
    bytes_written: int
    participants: tuple[str, ...]
    frames: dict[str, int]
    stop_reason: str
    complete: bool

    @property
    def bytes_per_minute(self) -> float:
        return self.bytes_written / max(self.duration_s, 1e-3) * 60.0


class _FileSink:
    """The file under the mcap Writer: no user-space buffer (each write reaches the kernel whole),
    and the offset after the last complete write, to cut a failed write back to a record boundary."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.position = 0
        self.good_position = 0
        self.lock = threading.Lock()  # between writes/close and the fsync thread

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        start = self.position
        try:
            while view:
                n = os.write(self.fd, view)
                self.position += n
                view = view[n:]
        except OSError:
            self.position = start
            raise
        self.good_position = self.position
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def fsync(self) -> None:
        with self.lock:
            if self.fd >= 0:
                os.fsync(self.fd)

    def cut_back(self) -> None:
        """Drop the bytes of a write that failed half-way (the file then ends on a record)."""
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, self.good_position)

    def close(self) -> None:
        with self.lock:
            if self.fd >= 0:
                with contextlib.suppress(OSError):
                    os.fsync(self.fd)
                os.close(self.fd)
                self.fd = -1


@dataclass
class _Channel:
    spec: ChannelSpec
    channel_id: int
    count: int = 0


@dataclass
class _Participant:
    frames: int = 0
    gaps: int = 0
    last_sequence: int | None = None
    codecs: set[str] = field(default_factory=set)
    clock_offset_ms: float | None = None


def _open_error(path: str, exc: OSError) -> RecordingError:
    directory = os.path.dirname(os.path.abspath(path))
    reasons = {
        errno.ENOENT: f"the directory {directory} does not exist",
        errno.ENOTDIR: f"a part of {directory} is not a directory",
        errno.EACCES: f"permission to write in {directory} is denied",
        errno.EPERM: f"permission to write in {directory} is denied",
        errno.EROFS: f"{directory} is on a read-only file system",
        errno.EISDIR: "it is a directory",
        errno.ENOSPC: "its disk is full",
        errno.EEXIST: "it already exists (pass --overwrite to replace it, or choose another name)",
    }
    reason = reasons.get(exc.errno or 0, exc.strerror or str(exc))
    return RecordingError(f"cannot record to {path}: {reason}")


def _write_error(path: str, exc: OSError, elapsed_s: float) -> RecordingError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return RecordingError(f"the disk holding {path} is full; recording stopped after {elapsed_s:.1f} s")
    return RecordingError(
        f"writing {path} failed ({exc.strerror or exc}); recording stopped after {elapsed_s:.1f} s"
    )


class Recorder:
    """Records the bus into ``path`` from :meth:`start` until :meth:`stop` (or ``seconds``).

    ``Recorder(path, bus_address=..., note=..., seconds=...)``; ``start()`` opens the file and
    starts the recording thread, ``stop()`` finishes the file and returns a
    :class:`RecordingReport` (raising :class:`RecordingError` if writing failed). Pass ``bus`` to
    reuse an open :class:`~holo.bus.Bus` (its context is used, never closed here).
    """

    def __init__(
        self,
        path: str,
        bus_address: str | None = None,
        *,
        bus: Bus | None = None,
        note: str = "",
        seconds: float | None = None,
        calibration: str | None = None,
        topics: tuple[str, ...] = ("holo/",),
        overwrite: bool = False,
        chunk_period_s: float = 0.5,
        sync_period_s: float = 1.0,
        compression: str = "zstd",
        recorder_name: str = "holo record",
    ) -> None:
        if seconds is not None and seconds <= 0:
            raise RecordingError(f"the recording length must be positive, got {seconds:g} s")
        if not 0.01 <= chunk_period_s <= 1.0:
            raise RecordingError(f"chunks must close every 0.01–1 s, got {chunk_period_s:g} s")
        if compression not in ("zstd", "lz4", "none"):
            raise RecordingError(f"unknown chunk compression {compression!r} (zstd, lz4 or none)")
        self.path = path
        self.bus_address = bus_address
        self.note = note
        self.seconds = seconds
        self.calibration = calibration
        self.topics = topics
        self.overwrite = overwrite
        self.chunk_period_s = chunk_period_s
        self.sync_period_s = sync_period_s
        self.compression = compression
        self.recorder_name = recorder_name
        self._bus = bus
        self._own_bus: Bus | None = None
        self._socket: zmq.Socket[bytes] | None = None
        self._sink: _FileSink | None = None
        self._writer: Writer | None = None
        self._thread: threading.Thread | None = None
        self._sync_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self._stop_reason = "it was stopped"
        self._error: RecordingError | None = None
        self._channels: dict[bytes, _Channel] = {}
        self._schema_ids: dict[str, int] = {}
        self._complete = False
        self._participants: dict[str, _Participant] = {}
        self._messages = 0
        self._started_ns = 0
        self._started_mono = 0.0
        self._ended_mono: float | None = None
        self._report: RecordingReport | None = None
        self._stopped = False

    # -- public -------------------------------------------------------------------------------------
    @property
    def error(self) -> RecordingError | None:
        return self._error

    @property
    def elapsed_s(self) -> float:
        if not self._started_mono:
            return 0.0
        return (self._ended_mono or time.monotonic()) - self._started_mono

    @property
    def messages(self) -> int:
        return self._messages

    @property
    def bytes_written(self) -> int:
        return self._sink.position if self._sink is not None else 0

    def start(self) -> None:
        """Open the file (raising :class:`RecordingError` if it cannot be written) and start recording."""
        if self._thread is not None:
            raise RecordingError("this recorder was already started")
        calibration = self._read_calibration()
        self._open_file()
        try:
            self._start_writer(calibration)
            self._subscribe()
        except BaseException:
            self._abandon()
            raise
        self._thread = threading.Thread(target=self._run, name="holo-recorder", daemon=True)
        self._sync_thread = threading.Thread(target=self._sync_loop, name="holo-recorder-sync", daemon=True)
        self._thread.start()
        self._sync_thread.start()
        logger.info("recording %s from bus %s into %s", ", ".join(self.topics), self.address, self.path)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until the recording ends by itself (``seconds`` reached, or a write failed)."""
        return self._done.wait(timeout_s)

    def stop(self, reason: str = "it was stopped") -> RecordingReport:
        """Finish the file and return what it holds; raises the :class:`RecordingError` that stopped it, if any."""
        if self._thread is None:
            raise RecordingError("this recorder was never started")
        if not self._stopped:
            if not self._done.is_set():
                self._stop_reason = reason
            self._stop.set()
            self._thread.join()
            if self._sync_thread is not None:
                self._sync_thread.join()
            self._close_bus()
            self._stopped = True
        assert self._report is not None
        if self._error is not None:
            raise self._error
        return self._report

    def __enter__(self) -> Recorder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            try:
                self.stop()
            except RecordingError as err:
                if exc[0] is None:
                    raise
                logger.error("%s", err)

    # -- start-up -----------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        """The bus this recorder listens to."""
        return self._bus.address if self._bus is not None else (self.bus_address or "the default bus")

    def _read_calibration(self) -> tuple[bytes, int] | None:
        if self.calibration is None:
            return None
        try:
            with open(self.calibration, "rb") as f:
                data = f.read()
            mtime_ns = os.stat(self.calibration).st_mtime_ns
        except OSError as exc:
            raise RecordingError(
                f"the calibration file {self.calibration} cannot be read ({exc.strerror})"
            ) from None
        try:
            json.loads(data)
        except (ValueError, UnicodeDecodeError):
            logger.warning(
                "the calibration file %s is not JSON; attaching its bytes anyway", self.calibration
            )
        return data, mtime_ns

    def _open_file(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if self.overwrite else os.O_EXCL)
        if os.path.isdir(self.path):
            raise _open_error(self.path, OSError(errno.EISDIR, "is a directory"))
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise _open_error(self.path, exc) from None
        self._sink = _FileSink(fd)

    def _start_writer(self, calibration: tuple[bytes, int] | None) -> None:
        assert self._sink is not None
        compression = {
            "zstd": CompressionType.ZSTD,
            "lz4": CompressionType.LZ4,
            "none": CompressionType.NONE,
        }[self.compression]
        self._writer = Writer(
            cast(IO[Any], self._sink),
            chunk_size=CHUNK_BYTES,
            compression=compression,
            enable_data_crcs=True,
        )
        self._started_ns = time.time_ns()
        self._started_mono = time.monotonic()
        try:
            self._writer.start(profile="", library=f"holo/{holo.__version__} ({self.recorder_name})")
            self._writer.add_metadata(SESSION_METADATA, self._session_metadata())
            if calibration is not None:
                data, mtime_ns = calibration
                self._writer.add_attachment(
                    create_time=mtime_ns,
                    log_time=self._started_ns,
                    name=os.path.basename(self.calibration or "calibration.json"),
                    media_type="application/json",
                    data=data,
                )
        except OSError as exc:
            raise _open_error(self.path, exc) from None

    def _session_metadata(self) -> dict[str, str]:
        return {
            "format": RECORDING_FORMAT,
            "start_time_ns": str(self._started_ns),
            "start_time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._started_ns / 1e9)),
            "monotonic_at_start_ns": str(int(self._started_mono * 1e9)),
            "clock": "log_time is the recording machine's wall clock (time.time_ns) at receipt",
            "host": socket.gethostname(),
            "bus": self.address,
            "topics": json.dumps(list(self.topics)),
            "note": self.note,
            "recorder": self.recorder_name,
            "pid": str(os.getpid()),
            "holo_version": holo.__version__,
            "chunk_period_s": f"{self.chunk_period_s:g}",
            "calibration": os.path.basename(self.calibration) if self.calibration else "",
        }

    def _subscribe(self) -> None:
        bus = self._bus
        if bus is None:
            bus = self._own_bus = Bus(self.bus_address)
        sock: zmq.Socket[bytes] = bus.context.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
        for prefix in self.topics:
            sock.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        sock.connect(bus.sub_endpoint)
        self._socket = sock

    def _close_bus(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._own_bus is not None:
            self._own_bus.close()
            self._own_bus = None

    def _abandon(self) -> None:
        self._close_bus()
        if self._sink is not None:
            self._sink.close()

    # -- the recording thread -----------------------------------------------------------------------
    def _run(self) -> None:
        sock, writer = self._socket, self._writer
        assert sock is not None and writer is not None
        deadline = self._started_mono + self.seconds if self.seconds is not None else None
        chunk_due: float | None = None  # when the open chunk must be closed
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    self._stop_reason = f"its {self.seconds:g} s were up"
                    break
                wait_s = 0.1
                if chunk_due is not None:
                    wait_s = min(wait_s, chunk_due - now)
                if deadline is not None:
                    wait_s = min(wait_s, deadline - now)
                if sock.poll(max(0, int(wait_s * 1000))):
                    for _ in range(_DRAIN_BATCH):
                        try:
                            parts = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        if len(parts) != 2:
                            continue
                        self._record(parts[0], parts[1], writer)
                        if chunk_due is None:
                            chunk_due = time.monotonic() + self.chunk_period_s
                if chunk_due is not None and time.monotonic() >= chunk_due:
                    writer.flush()
                    chunk_due = None
            self._finish(writer)
        except OSError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug must not leave the file without its data
            logger.exception("the recorder failed")
            self._fail(OSError(errno.EIO, f"internal error: {exc}"))
        finally:
            self._ended_mono = time.monotonic()
            self._make_report()
            self._done.set()

    def _record(self, topic_bytes: bytes, payload: bytes, writer: Writer) -> None:
        log_time_ns = time.time_ns()
        channel = self._channels.get(topic_bytes)
        if channel is None:
            channel = self._register(topic_bytes, payload, writer)
        publish_time_ns = self._publish_time(channel.spec, payload, log_time_ns)
        writer.add_message(
            channel.channel_id, log_time_ns, payload, publish_time_ns, sequence=channel.count & 0xFFFFFFFF
        )
        channel.count += 1
        self._messages += 1

    def _register(self, topic_bytes: bytes, payload: bytes, writer: Writer) -> _Channel:
        topic = topic_bytes.decode("utf-8", errors="replace")
        spec = channel_spec(topic, payload)
        schema_id = 0
        if spec.schema is not None:
            schema_id = self._schema_ids.get(spec.schema.name, 0)
            if not schema_id:
                schema_id = writer.register_schema(spec.schema.name, spec.schema.encoding, spec.schema.data)
                self._schema_ids[spec.schema.name] = schema_id
        channel_id = writer.register_channel(topic, spec.message_encoding, schema_id, spec.metadata)
        channel = _Channel(spec, channel_id)
        self._channels[topic_bytes] = channel
        logger.info("recording %s", topic)
        return channel

    def _publish_time(self, spec: ChannelSpec, payload: bytes, log_time_ns: int) -> int:
        try:
            if spec.kind == "cloud":
                header = PacketHeader.peek(payload)
                if header is None:
                    return log_time_ns
                self._count_frame(spec.participant, header)
                return header.capture_time_ns if header.capture_time_ns > 0 else log_time_ns
            if spec.kind == "audio":
                (t_ns,) = struct.unpack_from("!q", payload, 0)
                return int(t_ns) if len(payload) >= AUDIO_HEADER.size and t_ns > 0 else log_time_ns
            if spec.message_encoding == "json":
                value = json.loads(payload)
                if not isinstance(value, dict):
                    return log_time_ns
                if spec.kind == "stats" and isinstance(value.get("clock_offset_ms"), int | float):
                    self._participant(spec.participant).clock_offset_ms = float(value["clock_offset_ms"])
                t = value.get("time_ns")
                return t if isinstance(t, int) and t > 0 else log_time_ns
        except (ValueError, struct.error, UnicodeDecodeError):
            pass
        return log_time_ns

    def _participant(self, name: str) -> _Participant:
        p = self._participants.get(name)
        if p is None:
            p = self._participants[name] = _Participant()
        return p

    def _count_frame(self, name: str, header: PacketHeader) -> None:
        p = self._participant(name)
        p.frames += 1
        p.gaps += sequence_gap(p.last_sequence, header.sequence)
        p.last_sequence = header.sequence
        if len(p.codecs) < MAX_CODECS:
            p.codecs.add(codec_name(header.codec_id))

    def _finish(self, writer: Writer) -> None:
        writer.flush()
        writer.add_metadata(SESSION_END_METADATA, self._end_metadata())
        writer.finish()
        assert self._sink is not None
        self._sink.close()
        self._complete = True

    def _end_metadata(self) -> dict[str, str]:
        end_ns = time.time_ns()
        names = sorted(self._participants)
        return {
            "end_time_ns": str(end_ns),
            "end_time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end_ns / 1e9)),
            "duration_s": f"{time.monotonic() - self._started_mono:.3f}",
            "stop_reason": self._stop_reason,
            "participants": json.dumps(names),
            "codecs": json.dumps({n: sorted(self._participants[n].codecs) for n in names}),
            "frames": json.dumps({n: self._participants[n].frames for n in names}),
            "sequence_gaps": json.dumps({n: self._participants[n].gaps for n in names}),
            "clock_offsets_ms": json.dumps({n: self._participants[n].clock_offset_ms for n in names}),
            "messages": str(self._messages),
            "topics": json.dumps({c.spec.topic: c.count for c in self._channels.values()}),
        }

    def _fail(self, exc: OSError) -> None:
        elapsed = time.monotonic() - self._started_mono
        self._error = _write_error(self.path, exc, elapsed)
        self._stop_reason = str(self._error)
        logger.error("%s", self._error)
        if self._sink is not None:
            self._sink.cut_back()
            self._sink.close()

    def _make_report(self) -> None:
        sink = self._sink
        names = tuple(sorted(self._participants))
        self._report = RecordingReport(
            path=self.path,
            duration_s=self.elapsed_s,
            messages=self._messages,
            bytes_written=sink.good_position if sink is not None else 0,
            participants=names,
            frames={n: self._participants[n].frames for n in names},
            stop_reason=self._stop_reason,
            complete=self._complete,
        )

    def _sync_loop(self) -> None:
        while not self._done.wait(self.sync_period_s):
            sink = self._sink
            if sink is None:
                return
            try:
                sink.fsync()
            except OSError as exc:  # the next write reports the cause; keep recording until then
                logger.warning("fsync of %s failed: %s", self.path, exc.strerror)
