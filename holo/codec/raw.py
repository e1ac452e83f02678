"""``raw``: uncompressed float32 points and 8-bit colours, for debugging and as a baseline."""

from __future__ import annotations

import struct

import numpy as np

from holo.codec.base import Decoded, Encoded
from holo.codec.packet import CameraInfo, LimitExceededError, PacketLimits, SectionError
from holo.frame import PersonCloud

__all__ = ["RawCodec"]

_COUNT = struct.Struct("!I")


class RawCodec:
    name = "raw"
    codec_id = 0

    def encoder(self) -> RawCodec:
        return self

    def decoder(self) -> RawCodec:
        return self

    def encode(self, cloud: PersonCloud) -> Encoded:
        n = len(cloud)
        geometry = _COUNT.pack(n) + np.ascontiguousarray(cloud.points_m, "<f4").tobytes()
        return Encoded(geometry=geometry, color=np.ascontiguousarray(cloud.colors).tobytes())

    def decode(
        self, geometry: bytes, color: bytes, camera: CameraInfo | None, limits: PacketLimits
    ) -> Decoded:
        if len(geometry) < _COUNT.size:
            raise SectionError("raw geometry section is shorter than its point count")
        (n,) = _COUNT.unpack_from(geometry, 0)
        if n > limits.max_points:
            raise LimitExceededError(
                f"raw packet claims {n} points, over the {limits.max_points}-point limit"
            )
        if len(geometry) != _COUNT.size + 12 * n:
            raise SectionError(
                f"raw geometry section holds {len(geometry)} bytes, {n} points need {4 + 12 * n}"
            )
        if len(color) != 3 * n:
            raise SectionError(f"raw colour section holds {len(color)} bytes, {n} points need {3 * n}")
        points = np.frombuffer(geometry, "<f4", 3 * n, _COUNT.size).reshape(n, 3).astype(np.float32)
        if not np.isfinite(points).all():
            raise SectionError("raw geometry holds non-finite coordinates")
        colors = np.frombuffer(color, np.uint8).reshape(n, 3).copy()
        return Decoded(points, colors)
