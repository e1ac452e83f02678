"""Reading recordings robustly, and the summary ``holo info`` prints.

:class:`RecordingReader` walks the file front to back. The mcap library parses each record
(``mcap.records``) and each chunk (``mcap.stream_reader.breakup_chunk``, with its CRC checked); the
framing around them is ours, so that every record's length is checked against the bytes present
before anything is read, and a failure is caught where it happens:

- a file cut anywhere (a killed recorder, a full disk, a partial copy) is read up to its last whole
  record, and the loss is stated: "the file ends inside a chunk at byte N: the last 0.4 s are lost"
  (a chunk's header carries its time span, so the loss is known even when its body is not);
- a chunk whose CRC or compression is broken is skipped (its time span stated), and reading goes
  on with the next record; any other malformed record stops the reading there;
- the data-section and summary CRCs are checked when the file has them.

With ``recover=False`` (the default) the first damage raises :class:`RecordingError` after
everything before it was yielded; with ``recover=True`` damage is collected in
:attr:`RecordingReader.damage` and reading goes on as far as it can. A file that is not MCAP at
all raises :class:`RecordingError` either way.

Times: a recording's timeline starts at its first message's ``log_time``; "T s" in messages and
options (``--from``/``--to``) are seconds after it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import statistics
import struct
import zlib
from collections.abc import Generator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.records import Attachment, Channel, Chunk, Footer, Header, Message, Metadata, Schema
from mcap.stream_reader import breakup_chunk

from holo.errors import RecordingError
from holo.record.schemas import (
    MAX_CODECS,
    SESSION_END_METADATA,
    SESSION_METADATA,
    PacketHeader,
    codec_name,
    sequence_gap,
    split_topic,
)
from holo.stats import percentile

__all__ = [
    "AttachmentInfo",
    "Damage",
    "ParticipantSummary",
    "RecordedMessage",
    "RecordingReader",
    "RecordingSummary",
    "format_summary",
    "summarize",
]

logger = logging.getLogger(__name__)

MAGIC = b"\x89MCAP0\r\n"
MAX_CHUNK_BYTES = 1 << 30
_RECORD = struct.Struct("<BQ")
_CHUNK_TIMES = struct.Struct("<QQ")
_OPCODES = {int(op) for op in Opcode}
_NAMES = {int(op): op.name.lower().replace("_", " ") for op in Opcode}


@dataclass(frozen=True, slots=True)
class RecordedMessage:
    topic: str
    participant: str  # "" for session-wide topics
    kind: str  # cloud, audio, stats, presence, headpose, ...
    log_time_ns: int  # when the recorder received it
    publish_time_ns: int  # capture time of clouds, chunk time of audio, time_ns of JSON
    data: bytes
    sequence: int  # the message's index on its channel


@dataclass(frozen=True, slots=True)
class Damage:
    """One place where the file could not be read, and what that cost."""

    offset: int
    reason: str  # a sentence
    lost_s: float | None = None  # seconds of messages lost, when known
    fatal: bool = True  # nothing after it could be read


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    name: str
    media_type: str
    log_time_ns: int
    create_time_ns: int
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class _ChannelInfo:
    topic: str
    participant: str
    kind: str


class RecordingReader:
    """One pass (or several) over a recording's messages; see the module docstring."""

    def __init__(self, path: str, *, recover: bool = False) -> None:
        self.path = path
        self.recover = recover
        try:
            self.file_bytes = os.path.getsize(path)
            self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        except FileNotFoundError:
            raise RecordingError(f"the recording {path} does not exist") from None
        except IsADirectoryError:
            raise RecordingError(f"{path} is a directory, not a recording") from None
        except OSError as exc:
            raise RecordingError(f"the recording {path} cannot be read ({exc.strerror})") from None
        head = self._file.read(len(MAGIC))
        if head != MAGIC:
            self._file.close()
            if len(head) < len(MAGIC) and MAGIC.startswith(head):
                raise RecordingError(
                    f"{path} is empty or cut off within its first {len(MAGIC)} bytes: nothing was recorded"
                )
            raise RecordingError(
                f"{path} is not an MCAP recording (it does not start with MCAP's magic bytes)"
            )
        self._file.seek(max(0, self.file_bytes - len(MAGIC)))
        self._ends_with_magic = self.file_bytes >= 2 * len(MAGIC) and self._file.read(len(MAGIC)) == MAGIC
        self._reset()

    def _reset(self) -> None:
        self.library = ""
        self.metadata: dict[str, dict[str, str]] = {}
        self.attachments: list[AttachmentInfo] = []
        self.damage: list[Damage] = []
        self.complete = False
        self.readable_bytes = 0
        self.unreadable_bytes = 0  # inside readable_bytes: skipped corrupt chunks
        self.first_log_ns: int | None = None
        self.last_log_ns: int | None = None
        self.messages_read = 0
        self.topics: dict[str, int] = {}
        self._channels: dict[int, _ChannelInfo] = {}
        self._orphans = 0

    # -- public -------------------------------------------------------------------------------------
    @property
    def duration_s(self) -> float:
        if self.first_log_ns is None or self.last_log_ns is None:
            return 0.0
        return (self.last_log_ns - self.first_log_ns) / 1e9

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def messages(self, topics: Sequence[str] | None = None) -> Generator[RecordedMessage, None, None]:
        """Every readable message in file order (topics: keep those starting with one of these)."""
        self._reset()
        f = self._file
        f.seek(len(MAGIC))
        crc = zlib.crc32(MAGIC)
        pos = len(MAGIC)
        size = self.file_bytes
        summary_start: int | None = None
        summary_crc = 0
        self.readable_bytes = pos
        while True:
            if pos == size:
                self._damage(pos, f"the file ends at byte {pos:,} without MCAP's closing footer", None)
                return
            if pos + _RECORD.size > size:
                self._damage(pos, f"the file ends inside a record header at byte {pos:,}", None)
                return
            head = f.read(_RECORD.size)
            opcode, length = _RECORD.unpack(head)
            name = _NAMES.get(opcode, f"type {opcode:#x}")
            if opcode not in _OPCODES and opcode < 0x80:
                self._damage(
                    pos, f"the file is corrupt at byte {pos:,} (a record of unknown type {opcode:#x})", None
                )
                return
            if pos + _RECORD.size + length > size:
                self._truncated_record(pos, opcode, length, name)
                return
            body = f.read(length)
            record_end = pos + _RECORD.size + length
            if opcode == Opcode.DATA_END:
                stored = struct.unpack_from("<I", body)[0] if len(body) >= 4 else 0
                if stored and stored != crc:
                    self._damage(
                        pos,
                        f"the data section's CRC does not match (stored {stored:08x}, computed {crc:08x}): "
                        "a byte outside the message chunks was altered",
                        None,
                        fatal=False,
                    )
                summary_start = record_end
                summary_crc = 0
            elif summary_start is not None and opcode != Opcode.FOOTER:
                summary_crc = zlib.crc32(body, zlib.crc32(head, summary_crc))
            else:
                crc = zlib.crc32(body, zlib.crc32(head, crc))
            try:
                if opcode == Opcode.CHUNK:
                    yield from self._chunk(pos, body, topics)
                elif opcode == Opcode.FOOTER:
                    self._footer(pos, body, summary_start, summary_crc)
                    self.readable_bytes = size
                    return
                elif summary_start is None:
                    yield from self._record(pos, opcode, body, topics)
            except _StopReading:
                return
            pos = record_end
            self.readable_bytes = pos

    # -- records ------------------------------------------------------------------------------------
    def _record(
        self, pos: int, opcode: int, body: bytes, topics: Sequence[str] | None
    ) -> Iterator[RecordedMessage]:
        try:
            if opcode == Opcode.HEADER:
                self.library = Header.read(_stream(body)).library
            elif opcode == Opcode.METADATA:
                meta = Metadata.read(_stream(body))
                self.metadata[meta.name] = dict(meta.metadata)
            elif opcode == Opcode.ATTACHMENT:
                if (
                    len(body) >= 4
                    and zlib.crc32(body[:-4]) != struct.unpack_from("<I", body, len(body) - 4)[0]
                ):
                    raise ValueError("its CRC does not match")
                a = Attachment.read(_stream(body))
                self.attachments.append(
                    AttachmentInfo(a.name, a.media_type, a.log_time, a.create_time, a.data)
                )
            elif opcode in (Opcode.SCHEMA, Opcode.CHANNEL, Opcode.MESSAGE):
                record: Schema | Channel | Message
                if opcode == Opcode.SCHEMA:
                    record = Schema.read(_stream(body))
                elif opcode == Opcode.CHANNEL:
                    record = Channel.read(_stream(body))
                else:
                    record = Message.read(_stream(body), len(body))
                yield from self._records([record], topics)
        except Exception as exc:  # mcap/struct/unicode errors of a malformed record, caught at the seam
            self._damage(
                pos, f"the file is corrupt at byte {pos:,} (its {_NAMES[opcode]} record: {_why(exc)})", None
            )
            raise _StopReading from None

    def _chunk(self, pos: int, body: bytes, topics: Sequence[str] | None) -> Iterator[RecordedMessage]:
        start_ns, end_ns = _CHUNK_TIMES.unpack_from(body, 0) if len(body) >= 16 else (0, 0)
        try:
            chunk = Chunk.read(_stream(body))
            if chunk.uncompressed_size > MAX_CHUNK_BYTES:
                raise ValueError(f"it claims {chunk.uncompressed_size:,} bytes uncompressed")
            records = breakup_chunk(chunk, validate_crc=True)
        except Exception as exc:  # zstd/lz4/CRC/struct errors of a damaged chunk, caught at the seam
            lost = (end_ns - start_ns) / 1e9 if 0 < start_ns <= end_ns else None
            span = f"its {lost:.1f} s of messages" if lost is not None else "its messages"
            self.unreadable_bytes += _RECORD.size + len(body)
            self._damage(
                pos,
                f"the chunk at byte {pos:,} is corrupt ({_why(exc)}): {span} are skipped",
                lost,
                fatal=False,
            )
            return
        yield from self._records(records, topics)

    def _records(
        self, records: Sequence[Schema | Channel | Message | Any], topics: Sequence[str] | None
    ) -> Iterator[RecordedMessage]:
        for r in records:
            if isinstance(r, Message):
                ch = self._channels.get(r.channel_id)
                if ch is None:
                    self._orphans += 1
                    continue
                self.messages_read += 1
                self.topics[ch.topic] = self.topics.get(ch.topic, 0) + 1
                if self.first_log_ns is None:
                    self.first_log_ns = r.log_time
                self.last_log_ns = (
                    r.log_time if self.last_log_ns is None else max(self.last_log_ns, r.log_time)
                )
                if topics is not None and not any(ch.topic.startswith(t) for t in topics):
                    continue
                yield RecordedMessage(
                    ch.topic, ch.participant, ch.kind, r.log_time, r.publish_time, r.data, r.sequence
                )
            elif isinstance(r, Channel):
                participant, kind = split_topic(r.topic)
                self._channels[r.id] = _ChannelInfo(
                    r.topic, r.metadata.get("participant", participant), r.metadata.get("kind", kind)
                )

    def _footer(self, pos: int, body: bytes, summary_start: int | None, summary_crc: int) -> None:
        if len(body) < 20:
            self._damage(
                pos, f"the file is corrupt at byte {pos:,} (its footer is {len(body)} bytes long)", None
            )
            return
        footer = Footer.read(_stream(body))
        if footer.summary_crc and summary_start is not None:
            computed = zlib.crc32(
                struct.pack("<BQQQ", Opcode.FOOTER, 20, footer.summary_start, footer.summary_offset_start),
                summary_crc,
            )
            if computed != footer.summary_crc:
                self._damage(
                    pos,
                    "the summary section's CRC does not match: the index at the end of the file is damaged "
                    "(every message was still read)",
                    None,
                    fatal=False,
                )
        if not self._ends_with_magic:
            self._damage(pos, "the file's closing magic bytes are damaged", None, fatal=False)
        if self._orphans:
            self._damage(
                pos,
                f"{self._orphans} message(s) belong to channels defined in a damaged chunk and were skipped",
                None,
                fatal=False,
            )
        self.complete = not self.damage

    def _truncated_record(self, pos: int, opcode: int, length: int, name: str) -> None:
        if self._ends_with_magic:
            self._damage(
                pos,
                f"the file is corrupt at byte {pos:,}: a {name} record claims {length:,} bytes, more than remain",
                None,
            )
            return
        if opcode != Opcode.CHUNK:
            self._damage(pos, f"the file ends inside a {name} record at byte {pos:,}", None)
            return
        lost: float | None = None
        f = self._file
        f.seek(pos + _RECORD.size)
        times = f.read(_CHUNK_TIMES.size)
        if len(times) == _CHUNK_TIMES.size:
            start_ns, end_ns = _CHUNK_TIMES.unpack(times)
            since = self.last_log_ns if self.last_log_ns is not None else start_ns
            if 0 < start_ns <= end_ns and end_ns - since < 10**12:
                lost = max(0, end_ns - since) / 1e9
        what = f"the last {lost:.1f} s are lost" if lost is not None else "its messages are lost"
        self._damage(pos, f"the file ends inside a chunk at byte {pos:,}: {what}", lost)

    def _damage(self, pos: int, reason: str, lost_s: float | None, *, fatal: bool = True) -> None:
        damage = Damage(pos, reason, lost_s, fatal)
        self.damage.append(damage)
        if not self.recover:
            until = self.duration_s
            raise RecordingError(
                f"{self.path} is damaged: {reason} (readable: {until:.1f} s, {self.readable_bytes:,} of "
                f"{self.file_bytes:,} bytes; `holo info` reports what can be recovered)"
            )
        logger.debug("%s: %s", self.path, reason)


class _StopReading(Exception):
    pass


def _stream(body: bytes) -> ReadDataStream:
    return ReadDataStream(io.BytesIO(body))


def _why(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:120]


# -- the summary ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParticipantSummary:
    """One participant in a recording; latency figures come from its stats messages (ms)."""

    name: str
    frames: int
    keyframes: int
    skeleton_frames: int
    fps: float
    codecs: tuple[str, ...]
    cloud_bytes: int
    sequence_gaps: int
    audio_s: float
    stats_messages: int
    drops: dict[str, int]
    latency_p50_ms: float | None  # median over stats periods of each period's p50
    latency_p95_ms: float | None  # median over stats periods of each period's p95
    latency_worst_p95_ms: float | None
    delay_p50_ms: float | None  # capture -> recorder (log_time - capture time), this machine's clock
    delay_p95_ms: float | None
    clock_offset_ms: float | None  # the last estimate in its stats


@dataclass(frozen=True, slots=True)
class RecordingSummary:
    path: str
    file_bytes: int
    readable_bytes: int
    complete: bool
    damage: tuple[Damage, ...]
    start_ns: int | None
    duration_s: float  # first to last readable message, so also how far the file is readable
    messages: int
    topics: dict[str, int]
    participants: tuple[ParticipantSummary, ...]
    metadata: dict[str, dict[str, str]]
    attachments: tuple[tuple[str, str, int], ...]  # name, media type, bytes

    @property
    def readable_until_s(self) -> float:
        return self.duration_s

    @property
    def bytes_per_minute(self) -> float:
        return self.readable_bytes / max(self.duration_s, 1e-3) * 60.0

    @property
    def note(self) -> str:
        return self.metadata.get(SESSION_METADATA, {}).get("note", "")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["readable_until_s"] = self.readable_until_s
        out["bytes_per_minute"] = self.bytes_per_minute
        return out


@dataclass
class _Acc:
    frames: int = 0
    keyframes: int = 0
    skeletons: int = 0
    first_ns: int = 0
    last_ns: int = 0
    codecs: set[str] = field(default_factory=set)
    cloud_bytes: int = 0
    gaps: int = 0
    last_seq: int | None = None
    delays_ms: list[float] = field(default_factory=list)
    audio_samples: float = 0.0
    stats: int = 0
    p50: list[float] = field(default_factory=list)
    p95: list[float] = field(default_factory=list)
    drops: dict[str, int] = field(default_factory=dict)
    last_totals: dict[str, int] = field(default_factory=dict)
    clock_offset_ms: float | None = None

    def stats_message(self, value: dict[str, Any]) -> None:
        self.stats += 1
        for key, into in (("latency_p50_ms", self.p50), ("latency_p95_ms", self.p95)):
            v = value.get(key)
            if isinstance(v, int | float):
                into.append(float(v))
        if isinstance(value.get("clock_offset_ms"), int | float):
            self.clock_offset_ms = float(value["clock_offset_ms"])
        if isinstance(value.get("dropped_queue"), int):
            self.drops["queue (per period)"] = (
                self.drops.get("queue (per period)", 0) + value["dropped_queue"]
            )
        for key, v in value.items():
            if key.startswith("total_frames_dropped_") and isinstance(v, int):
                short = key.removeprefix("total_frames_dropped_")
                prev = self.last_totals.get(short)
                if prev is not None:
                    self.drops[short] = self.drops.get(short, 0) + (v - prev if v >= prev else v)
                else:
                    self.drops.setdefault(short, 0)
                self.last_totals[short] = v


def summarize(path: str) -> RecordingSummary:
    """Read the whole recording (recovering what a damaged file holds) and summarise it."""
    from holo.net.audio import AUDIO_HEADER

    acc: dict[str, _Acc] = {}

    def get(name: str) -> _Acc:
        a = acc.get(name)
        if a is None:
            a = acc[name] = _Acc()
        return a

    with RecordingReader(path, recover=True) as reader:
        for m in reader.messages():
            if m.kind == "cloud":
                a = get(m.participant)
                header = PacketHeader.peek(m.data)
                a.frames += 1
                a.cloud_bytes += len(m.data)
                a.first_ns = a.first_ns or m.log_time_ns
                a.last_ns = m.log_time_ns
                if header is None:
                    continue
                a.keyframes += header.keyframe
                a.skeletons += 3 in header.section_kinds
                if len(a.codecs) < MAX_CODECS:
                    a.codecs.add(codec_name(header.codec_id))
                a.gaps += sequence_gap(a.last_seq, header.sequence)
                a.last_seq = header.sequence
                if header.capture_time_ns > 0:
                    a.delays_ms.append((m.log_time_ns - header.capture_time_ns) / 1e6)
            elif m.kind == "audio" and len(m.data) >= AUDIO_HEADER.size:
                _, rate, _, samples = AUDIO_HEADER.unpack_from(m.data, 0)
                if rate > 0:
                    get(m.participant).audio_samples += samples / rate
            elif m.kind == "stats" and m.participant:
                try:
                    value = json.loads(m.data)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    get(m.participant).stats_message(value)
        start = reader.first_log_ns
        participants = []
        for name in sorted(acc):
            a = acc[name]
            span_s = (a.last_ns - a.first_ns) / 1e9
            participants.append(
                ParticipantSummary(
                    name=name,
                    frames=a.frames,
                    keyframes=a.keyframes,
                    skeleton_frames=a.skeletons,
                    fps=(a.frames - 1) / span_s if a.frames > 1 and span_s > 0 else 0.0,
                    codecs=tuple(sorted(a.codecs)),
                    cloud_bytes=a.cloud_bytes,
                    sequence_gaps=a.gaps,
                    audio_s=a.audio_samples,
                    stats_messages=a.stats,
                    drops=dict(a.drops),
                    latency_p50_ms=statistics.median(a.p50) if a.p50 else None,
                    latency_p95_ms=statistics.median(a.p95) if a.p95 else None,
                    latency_worst_p95_ms=max(a.p95) if a.p95 else None,
                    delay_p50_ms=percentile(a.delays_ms, 50),
                    delay_p95_ms=percentile(a.delays_ms, 95),
                    clock_offset_ms=a.clock_offset_ms,
                )
            )
        return RecordingSummary(
            path=path,
            file_bytes=reader.file_bytes,
            readable_bytes=reader.readable_bytes - reader.unreadable_bytes,
            complete=reader.complete,
            damage=tuple(reader.damage),
            start_ns=start,
            duration_s=reader.duration_s,
            messages=reader.messages_read,
            topics=dict(reader.topics),
            participants=tuple(participants),
            metadata=dict(reader.metadata),
            attachments=tuple((a.name, a.media_type, len(a.data)) for a in reader.attachments),
        )


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f}"


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def format_summary(s: RecordingSummary) -> str:
    """The human-readable report of ``holo info``."""
    import time as _time

    meta = s.metadata.get(SESSION_METADATA, {})
    end = s.metadata.get(SESSION_END_METADATA, {})
    lines = [f"{s.path}: " + ("complete" if s.complete else "DAMAGED" if s.damage else "incomplete")]
    started = meta.get("start_time_ns") or (str(s.start_ns) if s.start_ns else "")
    if started.isdigit():
        when = _time.strftime("%Y-%m-%d %H:%M:%S UTC", _time.gmtime(int(started) / 1e9))
        who = f" on {meta['host']}" if meta.get("host") else ""
        by = f" by {meta['recorder']}" if meta.get("recorder") else ""
        lines.append(f"  recorded    {when}{who}{by}")
    if s.note:
        lines.append(f"  note        {s.note}")
    lines.append(
        f"  duration    {s.duration_s:.1f} s, {s.messages:,} messages, {_size(s.readable_bytes)} "
        f"({_size(s.bytes_per_minute)} per minute)"
    )
    if end.get("stop_reason"):
        lines.append(f"  stopped     because {end['stop_reason']}")
    for name, media, n in s.attachments:
        lines.append(f"  attachment  {name} ({media}, {_size(n)})")
    if s.participants:
        header = (
            f"  {'participant':<14} {'frames':>7} {'fps':>5} {'codec':<10} {'gaps':>5} {'drops':>6} "
            f"{'skel':>6} {'audio s':>7} {'latency p50/p95 ms':>19} {'delay p50/p95 ms':>17} {'clock ms':>9}"
        )
        lines += ["", header]
        for p in s.participants:
            drops = sum(p.drops.values())
            offset = "–" if p.clock_offset_ms is None else f"{p.clock_offset_ms:+.1f}"
            lines.append(
                f"  {p.name:<14} {p.frames:>7} {p.fps:>5.1f} {','.join(p.codecs) or '–':<10} "
                f"{p.sequence_gaps:>5} {drops if p.stats_messages else '–':>6} {p.skeleton_frames:>6} "
                f"{p.audio_s:>7.1f} {_ms(p.latency_p50_ms) + ' / ' + _ms(p.latency_p95_ms):>19} "
                f"{_ms(p.delay_p50_ms) + ' / ' + _ms(p.delay_p95_ms):>17} {offset:>9}"
            )
    if s.topics:
        lines += ["", "  topics"]
        lines += [f"    {t:<32} {n:>8,}" for t, n in sorted(s.topics.items())]
    if s.damage:
        lines += [
            "",
            f"  readable up to {s.readable_until_s:.1f} s ({s.readable_bytes:,} bytes of {s.file_bytes:,})",
        ]
        lines += [f"  - {d.reason}" for d in s.damage]
    return "\n".join(lines)
