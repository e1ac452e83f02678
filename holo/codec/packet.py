"""The Holo packet: one frame of one participant, the same bytes on the bus, over WebRTC and on disk.

Layout (network byte order)::

    offset size
    0      4   magic            b"HOLO"
    4      1   format version   1
    5      1   codec id         (see holo.codec registry)
    6      2   flags            bit 0 keyframe, bit 1 points are in the world frame
    8      4   total length     bytes of the whole packet, CRC included
    12     4   sequence         per participant, wraps at 2**32
    16     8   capture time     ns since the Unix epoch (signed)
    24     1   participant len  P (1..64)
    25     P   participant      UTF-8
    25+P   1   section count    S (0..16)
    ...        S sections       type (1 byte), length (4 bytes), payload
    end-4  4   CRC-32           zlib.crc32 of every byte before it

Section types: 1 geometry, 2 colour, 3 skeleton, 4 camera, 5 info (UTF-8 JSON). A type appears at
most once. Parsing checks the magic, the version, the declared length against the bytes present and
the configured limit, then the CRC, then each section's length against what remains — all before
anything is allocated from a length read off the wire.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from holo.errors import PacketError
from holo.frame import POSE_JOINT_NAMES, CoordinateFrame, Intrinsics, Skeleton

__all__ = [
    "FLAG_KEYFRAME",
    "FLAG_WORLD",
    "FORMAT_VERSION",
    "MAGIC",
    "BadMagicError",
    "CameraInfo",
    "ChecksumError",
    "LimitExceededError",
    "Packet",
    "PacketLimits",
    "Section",
    "SectionError",
    "TruncatedPacketError",
    "UnknownVersionError",
    "pack_camera",
    "pack_skeleton",
    "unpack_camera",
    "unpack_skeleton",
]

MAGIC = b"HOLO"
FORMAT_VERSION = 1
FLAG_KEYFRAME = 1
FLAG_WORLD = 2

_HEADER = struct.Struct("!4sBBHIIqB")
_SECTION = struct.Struct("!BI")
_CRC = struct.Struct("!I")
MAX_SECTIONS = 16
MAX_PARTICIPANT_BYTES = 64


class Section:
    GEOMETRY = 1
    COLOR = 2
    SKELETON = 3
    CAMERA = 4
    INFO = 5
    NAMES: ClassVar[dict[int, str]] = {1: "geometry", 2: "colour", 3: "skeleton", 4: "camera", 5: "info"}


class BadMagicError(PacketError):
    pass


class UnknownVersionError(PacketError):
    pass


class TruncatedPacketError(PacketError):
    pass


class ChecksumError(PacketError):
    pass


class SectionError(PacketError):
    pass


class LimitExceededError(PacketError):
    pass


@dataclass(frozen=True, slots=True)
class PacketLimits:
    """What a receiver accepts; anything larger is refused before it is allocated."""

    max_bytes: int = 32 * 1024 * 1024
    max_points: int = 2_000_000

    def __post_init__(self) -> None:
        if self.max_bytes < 64 or self.max_points < 1:
            raise ValueError("packet limits must allow at least 64 bytes and 1 point")


DEFAULT_LIMITS = PacketLimits()


@dataclass(frozen=True, slots=True)
class Packet:
    codec_id: int
    participant: str
    sequence: int
    capture_time_ns: int
    flags: int = 0
    sections: dict[int, bytes] = field(default_factory=dict)
    version: int = FORMAT_VERSION

    @property
    def keyframe(self) -> bool:
        return bool(self.flags & FLAG_KEYFRAME)

    def section(self, kind: int) -> bytes | None:
        return self.sections.get(kind)

    def __bytes__(self) -> bytes:
        name = self.participant.encode("utf-8")
        if not 1 <= len(name) <= MAX_PARTICIPANT_BYTES:
            raise PacketError(f"participant name must be 1–{MAX_PARTICIPANT_BYTES} bytes, got {len(name)}")
        if len(self.sections) > MAX_SECTIONS:
            raise PacketError(f"a packet holds at most {MAX_SECTIONS} sections, got {len(self.sections)}")
        body = [bytes([len(self.sections)])]
        for kind, payload in self.sections.items():
            body.append(_SECTION.pack(kind, len(payload)))
            body.append(bytes(payload))
        body_bytes = b"".join(body)
        total = _HEADER.size + len(name) + len(body_bytes) + _CRC.size
        header = _HEADER.pack(
            MAGIC,
            self.version,
            self.codec_id,
            self.flags & 0xFFFF,
            total,
            self.sequence & 0xFFFFFFFF,
            self.capture_time_ns,
            len(name),
        )
        data = header + name + body_bytes
        return data + _CRC.pack(zlib.crc32(data))

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview, limits: PacketLimits = DEFAULT_LIMITS) -> Packet:
        view = memoryview(data).cast("B")
        n = len(view)
        if n < _HEADER.size + 1 + 1 + _CRC.size:
            if n >= 4 and bytes(view[:4]) != MAGIC:
                raise BadMagicError(f"not a Holo packet: bad magic {bytes(view[:4])!r} (expected {MAGIC!r})")
            raise TruncatedPacketError(f"packet truncated: {n} bytes is shorter than the smallest packet")
        magic, version, codec_id, flags, total, sequence, t_ns, name_len = _HEADER.unpack_from(view, 0)
        if magic != MAGIC:
            raise BadMagicError(f"not a Holo packet: bad magic {magic!r} (expected {MAGIC!r})")
        if version != FORMAT_VERSION:
            raise UnknownVersionError(
                f"unknown packet format version {version} (this Holo reads version {FORMAT_VERSION}); upgrade the older side"
            )
        if total > limits.max_bytes:
            raise LimitExceededError(f"packet declares {total} bytes, over the {limits.max_bytes}-byte limit")
        if total != n:
            if total > n:
                raise TruncatedPacketError(
                    f"packet truncated: header declares {total} bytes but only {n} arrived"
                )
            raise SectionError(
                f"packet has {n - total} bytes of trailing garbage after its declared {total} bytes"
            )
        (crc,) = _CRC.unpack_from(view, n - _CRC.size)
        actual = zlib.crc32(view[: n - _CRC.size])
        if crc != actual:
            raise ChecksumError(
                f"packet CRC mismatch (stored {crc:08x}, computed {actual:08x}): corrupted in transit"
            )
        if not 1 <= name_len <= MAX_PARTICIPANT_BYTES:
            raise SectionError(f"participant name length {name_len} is outside 1–{MAX_PARTICIPANT_BYTES}")
        pos = _HEADER.size
        end = n - _CRC.size
        if pos + name_len + 1 > end:
            raise SectionError("participant name runs past the end of the packet")
        try:
            participant = bytes(view[pos : pos + name_len]).decode("utf-8")
        except UnicodeDecodeError:
            raise SectionError("participant name is not valid UTF-8") from None
        pos += name_len
        count = view[pos]
        pos += 1
        if count > MAX_SECTIONS:
            raise SectionError(f"packet claims {count} sections, more than the {MAX_SECTIONS} allowed")
        sections: dict[int, bytes] = {}
        for i in range(count):
            if pos + _SECTION.size > end:
                raise SectionError(f"section {i + 1} of {count} header runs past the end of the packet")
            kind, length = _SECTION.unpack_from(view, pos)
            pos += _SECTION.size
            if length > end - pos:
                name = Section.NAMES.get(kind, f"type {kind}")
                raise SectionError(f"{name} section too long: {length} bytes declared, {end - pos} remain")
            if kind in sections:
                raise SectionError(f"section type {kind} appears twice")
            sections[kind] = bytes(view[pos : pos + length])
            pos += length
        if pos != end:
            raise SectionError(f"{end - pos} stray bytes after the last section")
        return cls(codec_id, participant, sequence, t_ns, flags, sections, version)


# -- camera and skeleton sections -----------------------------------------------------------------

_CAMERA = struct.Struct("!HH4ddBB")  # w, h, fx fy cx cy, depth unit, frame (0 camera / 1 world), has pose


@dataclass(frozen=True, slots=True)
class CameraInfo:
    intrinsics: Intrinsics | None
    depth_unit_m: float
    frame: CoordinateFrame
    world_from_camera: np.ndarray | None
    serial: str = ""


def pack_camera(info: CameraInfo) -> bytes:
    k = info.intrinsics
    dims = (k.width, k.height, k.fx, k.fy, k.cx, k.cy) if k else (0, 0, 0.0, 0.0, 0.0, 0.0)
    pose = info.world_from_camera
    out = [_CAMERA.pack(*dims, info.depth_unit_m or 0.0, 1 if info.frame == "world" else 0, pose is not None)]
    if pose is not None:
        out.append(np.asarray(pose, ">f8").reshape(16).tobytes())
    serial = info.serial.encode("utf-8")[:255]
    out.append(bytes([len(serial)]) + serial)
    return b"".join(out)


def unpack_camera(data: bytes) -> CameraInfo:
    if len(data) < _CAMERA.size + 1:
        raise SectionError(
            f"camera section is {len(data)} bytes, shorter than its {_CAMERA.size + 1}-byte minimum"
        )
    w, h, fx, fy, cx, cy, unit, frame, has_pose = _CAMERA.unpack_from(data, 0)
    pos = _CAMERA.size
    pose = None
    if has_pose:
        if len(data) < pos + 128 + 1:
            raise SectionError("camera section ends inside its world_from_camera matrix")
        pose = np.frombuffer(data, ">f8", 16, pos).astype(np.float64).reshape(4, 4)
        if not np.isfinite(pose).all():
            raise SectionError("camera section's world_from_camera holds non-finite numbers")
        pos += 128
    serial_len = data[pos]
    if len(data) != pos + 1 + serial_len:
        raise SectionError("camera section's serial length does not match its size")
    serial = data[pos + 1 : pos + 1 + serial_len].decode("utf-8", errors="replace")
    intrinsics = None
    if w and h:
        try:
            intrinsics = Intrinsics(width=w, height=h, fx=fx, fy=fy, cx=cx, cy=cy)
        except Exception as exc:  # IntrinsicsError: re-raised as a packet problem
            raise SectionError(f"camera section holds impossible intrinsics: {exc}") from None
    if not (unit == 0.0 or 1e-6 <= unit <= 1.0):
        raise SectionError(f"camera section depth unit {unit} m is not plausible")
    return CameraInfo(intrinsics, unit, "world" if frame == 1 else "camera", pose, serial)


_JOINT = np.dtype([("p", ">f4", 3), ("v", "u1")])


def pack_skeleton(skeleton: Skeleton) -> bytes:
    rec = np.empty(len(POSE_JOINT_NAMES), _JOINT)
    rec["p"] = skeleton.joints_m
    rec["v"] = np.clip(np.round(skeleton.visibility * 255), 0, 255)
    return bytes([1 if skeleton.frame == "world" else 0, len(rec)]) + rec.tobytes()


def unpack_skeleton(data: bytes) -> Skeleton:
    n = len(POSE_JOINT_NAMES)
    if len(data) != 2 + n * _JOINT.itemsize or data[1] != n:
        raise SectionError(
            f"skeleton section must hold {n} joints in {2 + n * _JOINT.itemsize} bytes, got {len(data)} bytes"
        )
    rec = np.frombuffer(data, _JOINT, n, 2)
    joints = rec["p"].astype(np.float32)
    if not np.isfinite(joints).all():
        raise SectionError("skeleton section holds non-finite joint positions")
    return Skeleton(
        joints_m=joints,
        visibility=rec["v"].astype(np.float32) / 255.0,
        frame="world" if data[0] == 1 else "camera",
    )


def pack_info(info: dict[str, object]) -> bytes:
    return json.dumps(info, separators=(",", ":")).encode("utf-8")


def unpack_info(data: bytes) -> dict[str, object]:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SectionError("info section is not UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise SectionError("info section must be a JSON object")
    return value
