"""``draco`` and ``draco-fast``: Google Draco through DracoPy, for comparison and for Draco viewers.

- ``draco`` — kd-tree coding (``compression_level=10``): Draco's smallest setting for point clouds;
  it reorders the points.
- ``draco-fast`` — sequential coding (``preserve_order=True``, ``compression_level=0``): Draco's
  fastest; points keep their order.

Both quantise positions to ``quantization_bits`` (default 11) over the cloud's bounding box and keep
8-bit colour. The colour travels inside Draco's bitstream (the packet's colour section is empty).
Draco allocates what its stream declares, so before handing a payload to Draco the header is read
here (magic, version 2.x, a point cloud, the method this codec uses, no metadata) and its point
count is checked against the packet limits: a 23 kB payload declaring 1.4 billion points (found by
``bench/fuzz_packets.py``) made Draco allocate over 20 GB. Deeper fields of Draco's stream are
Draco's own to check; ``bench/fuzz_packets.py`` exercises them. Holo's own codec checks every count.
"""

from __future__ import annotations

import struct

import numpy as np

from holo.codec.base import Decoded, Encoded
from holo.codec.packet import CameraInfo, LimitExceededError, PacketLimits
from holo.errors import CodecError, ConfigError, MissingDependencyError
from holo.frame import PersonCloud

__all__ = ["DracoCodec", "DracoFastCodec"]


def _dracopy():  # type: ignore[no-untyped-def]
    try:
        import DracoPy
    except ImportError:
        raise MissingDependencyError("the draco codecs need DracoPy (pip install DracoPy)") from None
    return DracoPy


_HEADER = struct.Struct("<5sBBBBHi")  # magic, major, minor, encoder type, method, flags, points
_METADATA_FLAG = 0x8000


def check_header(geometry: bytes, method: int, limits: PacketLimits) -> int:
    """The point count a Draco payload declares, after checking its header; raises CodecError."""
    if len(geometry) < _HEADER.size:
        raise CodecError(f"Draco payload is {len(geometry)} bytes, shorter than Draco's header")
    magic, major, _minor, kind, got_method, flags, points = _HEADER.unpack_from(geometry)
    if magic != b"DRACO":
        raise CodecError("Draco payload does not start with Draco's magic bytes")
    if major != 2:
        raise CodecError(f"Draco payload has bitstream version {major}.x; Holo reads 2.x")
    if kind != 0:
        raise CodecError(f"Draco payload is not a point cloud (encoder type {kind})")
    if got_method != method:
        raise CodecError(f"Draco payload uses coding method {got_method}, not this codec's {method}")
    if flags & _METADATA_FLAG:
        raise CodecError("Draco payload carries metadata, which Holo's packets never do")
    if not 0 < points <= limits.max_points:
        raise LimitExceededError(
            f"Draco payload declares {points} points; the limit is 1–{limits.max_points}"
        )
    return int(points)


class DracoCodec:
    name = "draco"
    codec_id = 2
    compression_level = 10
    preserve_order = False
    method = 1  # Draco's kd-tree point cloud coding

    def __init__(self, *, quantization_bits: int = 11, **_ignored: object) -> None:
        if not 1 <= quantization_bits <= 30:
            raise ConfigError(f"Draco quantization bits must be 1–30, got {quantization_bits}")
        self.quantization_bits = quantization_bits
        self._draco = _dracopy()

    def encoder(self) -> DracoCodec:
        return self

    def decoder(self) -> DracoCodec:
        return self

    def encode(self, cloud: PersonCloud) -> Encoded:
        if len(cloud) == 0:
            return Encoded(geometry=b"", color=b"")
        data = self._draco.encode(
            cloud.points_m,
            quantization_bits=self.quantization_bits,
            compression_level=self.compression_level,
            preserve_order=self.preserve_order,
            colors=cloud.colors,
        )
        return Encoded(geometry=bytes(data), color=b"")

    def decode(
        self, geometry: bytes, color: bytes, camera: CameraInfo | None, limits: PacketLimits
    ) -> Decoded:
        if not geometry:
            return Decoded(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8))
        declared = check_header(geometry, self.method, limits)
        try:
            mesh = self._draco.decode(geometry)
        except Exception as exc:  # DracoPy raises its own FileTypeException and friends
            raise CodecError(f"Draco payload does not decode: {exc}") from None
        points = np.asarray(mesh.points, np.float32).reshape(-1, 3)
        if len(points) != declared:
            raise CodecError(f"Draco payload declares {declared} points but decodes to {len(points)}")
        colors = mesh.colors
        if colors is None or len(colors) != len(points):
            raise CodecError("Draco payload carries no colour per point")
        colors = np.asarray(colors, np.uint8).reshape(-1, 3)[:, :3]
        if not np.isfinite(points).all():
            raise CodecError("Draco payload decodes to non-finite coordinates")
        return Decoded(np.ascontiguousarray(points), np.ascontiguousarray(colors))


class DracoFastCodec(DracoCodec):
    name = "draco-fast"
    codec_id = 3
    compression_level = 0
    preserve_order = True
    method = 0  # Draco's sequential point cloud coding
