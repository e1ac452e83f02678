"""The interface every point-cloud codec implements, and the registry that names them."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from holo.codec.packet import CameraInfo, PacketLimits
from holo.errors import ConfigError
from holo.frame import PersonCloud

__all__ = [
    "CODECS",
    "Codec",
    "CodecSpec",
    "Decoded",
    "Decoder",
    "Encoded",
    "Encoder",
    "codec_by_id",
    "get_codec",
]


@dataclass(frozen=True, slots=True)
class Encoded:
    geometry: bytes
    color: bytes
    keyframe: bool = True


@dataclass(frozen=True, slots=True)
class Decoded:
    points_m: np.ndarray  # N x 3 float32, in the frame the packet states
    colors: np.ndarray  # N x 3 uint8
    pixels: np.ndarray | None = None  # N x 2 uint16 when the codec kept the pixel grid


class Encoder(Protocol):
    def encode(self, cloud: PersonCloud) -> Encoded: ...


class Decoder(Protocol):
    def decode(
        self, geometry: bytes, color: bytes, camera: CameraInfo | None, limits: PacketLimits
    ) -> Decoded: ...


class Codec(Protocol):
    """A codec makes encoders and decoders (which may keep state between frames of one stream)."""

    name: str
    codec_id: int

    def encoder(self) -> Encoder: ...

    def decoder(self) -> Decoder: ...


@dataclass(frozen=True, slots=True)
class CodecSpec:
    name: str
    codec_id: int
    target: str  # "module:factory" -> factory(**options) -> Codec
    description: str


CODECS: dict[str, CodecSpec] = {}


def register(spec: CodecSpec) -> None:
    CODECS[spec.name] = spec


register(
    CodecSpec("raw", 0, "holo.codec.raw:RawCodec", "uncompressed float32 points + 8-bit colour (debugging)")
)
register(
    CodecSpec(
        "holo",
        1,
        "holo.codec.holo:HoloCodec",
        "Holo's own: range image or Morton-ordered voxels + image colour",
    )
)
register(
    CodecSpec("draco", 2, "holo.codec.draco:DracoCodec", "Google Draco (DracoPy), kd-tree coding: smallest")
)
register(
    CodecSpec("draco-fast", 3, "holo.codec.draco:DracoFastCodec", "Google Draco, sequential coding: fastest")
)


def _load(spec: CodecSpec, options: dict[str, object]) -> Codec:
    module_name, _, attr = spec.target.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    return factory(**options)  # type: ignore[no-any-return]


def get_codec(name: str, **options: object) -> Codec:
    spec = CODECS.get(name)
    if spec is None:
        raise ConfigError(f"unknown codec {name!r}; known codecs: {', '.join(CODECS)}")
    return _load(spec, options)


def codec_by_id(codec_id: int) -> Codec | None:
    for spec in CODECS.values():
        if spec.codec_id == codec_id:
            return _load(spec, {})
    return None
