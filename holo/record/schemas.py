"""How bus topics become MCAP channels: one channel per topic, a schema per kind of message.

========================  =================  ==================  ===================================
topic                     schema (encoding)  message encoding    publish_time
========================  =================  ==================  ===================================
``holo/<p>/cloud``        ``holo.packet``    ``holo-packet``     the packet's capture time (ns)
                          (``holo-packet``)
``holo/<p>/audio``        ``holo.audio``     ``holo-audio``      the chunk header's time (ns)
                          (``holo-audio``)
``holo/<p>/stats``        ``holo.stats``     ``json``            its ``time_ns`` field, else receipt
                          (``jsonschema``)
``holo/<p>/presence``     ``holo.presence``  ``json``            its ``time_ns`` field, else receipt
``holo/headpose``         ``holo.headpose``  ``json``            receipt
any other topic           ``holo.json``      ``json``            ``time_ns`` field, else receipt
                          (JSON payloads) or
                          no schema          ``holo-bytes``
========================  =================  ==================  ===================================

A message's ``log_time`` is always the time the recorder received it (``time.time_ns()`` on the
recording machine); its ``sequence`` counts the channel's messages from 0. A channel's metadata
names its ``participant`` (empty for session-wide topics) and ``kind`` (``cloud``, ``audio``...).
The two binary schemas carry, as their schema data, a plain-text description of the bytes (for
clouds, the packet format documented in :mod:`holo.codec.packet`), so a file explains itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from holo.codec import packet as _packet
from holo.codec.packet import _HEADER, _SECTION

__all__ = [
    "AUDIO_SCHEMA",
    "MAX_CODECS",
    "PACKET_SCHEMA",
    "ChannelSpec",
    "PacketHeader",
    "SchemaSpec",
    "channel_spec",
    "codec_name",
    "safe_name",
    "sequence_gap",
    "split_topic",
]

SESSION_METADATA = "holo.session"
SESSION_END_METADATA = "holo.session.end"
RECORDING_FORMAT = "holo-recording/1"


@dataclass(frozen=True, slots=True)
class SchemaSpec:
    name: str
    encoding: str
    data: bytes


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    topic: str
    participant: str
    kind: str
    message_encoding: str
    schema: SchemaSpec | None

    @property
    def metadata(self) -> dict[str, str]:
        return {"participant": self.participant, "kind": self.kind, "holo_format": RECORDING_FORMAT}


_PACKET_DOC = f"""holo.packet — one Holo packet per message, exactly the bytes that travelled on the bus.

Decode with holo.codec.StreamDecoder (or by hand from the layout below). The MCAP message's
publish_time is the packet's capture time; log_time is when the recorder received it.
{_packet.__doc__}"""

_AUDIO_DOC = """holo.audio — one chunk of voice per message.

Layout (network byte order): int64 time_ns (when the chunk arrived at the call, ns since the Unix
epoch), uint32 sample rate (Hz), uint16 channels, uint32 samples per channel; then interleaved
little-endian signed 16-bit PCM (samples x channels). See holo.net.audio.pack_audio/unpack_audio.
"""

PACKET_SCHEMA = SchemaSpec("holo.packet", "holo-packet", _PACKET_DOC.encode("utf-8"))
AUDIO_SCHEMA = SchemaSpec("holo.audio", "holo-audio", _AUDIO_DOC.encode("utf-8"))


def _json_schema(name: str, description: str, properties: dict[str, object]) -> SchemaSpec:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": name,
        "description": description,
        "type": "object",
        "properties": properties,
        "additionalProperties": True,
    }
    return SchemaSpec(name, "jsonschema", json.dumps(schema, indent=1).encode("utf-8"))


_NUM_OR_NULL = {"type": ["number", "null"]}
STATS_SCHEMA = _json_schema(
    "holo.stats",
    "One participant's call statistics for one period (about a second), as `holo call` publishes them.",
    {
        "participant": {"type": "string"},
        "peer": {"type": ["string", "null"]},
        "connected": {"type": "boolean"},
        "fps_sent": {"type": "number"},
        "fps_received": {"type": "number"},
        "dropped_queue": {"type": "integer"},
        "latency_p50_ms": _NUM_OR_NULL,
        "latency_p95_ms": _NUM_OR_NULL,
        "rtt_ms": _NUM_OR_NULL,
        "clock_offset_ms": {
            **_NUM_OR_NULL,
            "description": "the peer's clock minus this machine's, as the call estimates it",
        },
        "time_ns": {"type": "integer"},
    },
)
PRESENCE_SCHEMA = _json_schema(
    "holo.presence",
    "A participant joined (present=true) or left the call.",
    {"present": {"type": "boolean"}, "time_ns": {"type": "integer"}},
)
HEADPOSE_SCHEMA = _json_schema(
    "holo.headpose",
    "The headset's pose in the viewer's frame: position in metres, orientation as a quaternion x, y, z, w.",
    {
        "position": {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3},
        "orientation": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
    },
)
GENERIC_JSON_SCHEMA = _json_schema("holo.json", "A JSON message of a topic Holo does not describe.", {})

_KINDS: dict[str, tuple[str, SchemaSpec]] = {
    "cloud": ("holo-packet", PACKET_SCHEMA),
    "audio": ("holo-audio", AUDIO_SCHEMA),
    "stats": ("json", STATS_SCHEMA),
    "presence": ("json", PRESENCE_SCHEMA),
    "headpose": ("json", HEADPOSE_SCHEMA),
}


def split_topic(topic: str) -> tuple[str, str]:
    """(participant, kind) of a bus topic: ``holo/ana/cloud`` -> (ana, cloud), ``holo/headpose`` -> ("", headpose)."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == "holo" and parts[1]:
        return parts[1], parts[2]
    if len(parts) == 2 and parts[0] == "holo":
        return "", parts[1]
    return "", topic


def channel_spec(topic: str, first_payload: bytes) -> ChannelSpec:
    """The channel a topic is recorded on (unknown kinds: JSON if the first payload is, else raw bytes)."""
    participant, kind = split_topic(topic)
    known = _KINDS.get(kind)
    if known is not None:
        return ChannelSpec(topic, participant, kind, known[0], known[1])
    try:
        json.loads(first_payload)
    except (ValueError, UnicodeDecodeError):
        return ChannelSpec(topic, participant, kind, "holo-bytes", None)
    return ChannelSpec(topic, participant, kind, "json", GENERIC_JSON_SCHEMA)


@dataclass(frozen=True, slots=True)
class PacketHeader:
    """What a packet's header says, read without checking the CRC or copying sections (cheap)."""

    codec_id: int
    flags: int
    sequence: int
    capture_time_ns: int
    participant: str
    section_kinds: frozenset[int]

    @property
    def keyframe(self) -> bool:
        return bool(self.flags & _packet.FLAG_KEYFRAME)

    @classmethod
    def peek(cls, data: bytes) -> PacketHeader | None:
        """The header of ``data``, or None when it does not even look like a Holo packet."""
        if len(data) < _HEADER.size + 2 or data[:4] != _packet.MAGIC:
            return None
        _, _, codec_id, flags, total, sequence, t_ns, name_len = _HEADER.unpack_from(data, 0)
        pos = _HEADER.size + name_len
        if total != len(data) or pos >= len(data):
            return None
        name = data[_HEADER.size : pos].decode("utf-8", errors="replace")
        count = data[pos]
        pos += 1
        kinds = set()
        for _ in range(min(count, _packet.MAX_SECTIONS)):
            if pos + _SECTION.size > len(data):
                break
            kind, length = _SECTION.unpack_from(data, pos)
            kinds.add(kind)
            pos += _SECTION.size + length
        return cls(codec_id, flags, sequence, t_ns, name, frozenset(kinds))


MAX_CODECS = 8  # at most this many codec names are collected per participant
_MAX_GAP = 1_000_000


def sequence_gap(last: int | None, seq: int) -> int:
    """Packets missing between sequence ``last`` and ``seq`` (32-bit wrap-around), 0 for the first packet.

    A jump of a million or more (a sender that restarted at 0, or went backwards) is not a gap.
    """
    if last is None:
        return 0
    gap = (seq - last - 1) & 0xFFFFFFFF
    return gap if gap < _MAX_GAP else 0


def safe_name(name: str) -> str:
    """A participant name as a file name (letters, digits, ``._-``; no leading dot)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return cleaned or "participant"


def codec_name(codec_id: int) -> str:
    from holo.codec.base import CODECS

    for name, spec in CODECS.items():
        if spec.codec_id == codec_id:
            return name
    return f"codec {codec_id}"
