"""Packets and codecs: a PersonCloud to bytes and back.

``encode_cloud(cloud, encoder, codec_id)`` builds the :class:`Packet` (geometry and colour from the
codec, camera and skeleton sections from the cloud); ``decode_packet(packet, decoder)`` rebuilds
the cloud. :class:`StreamEncoder` / :class:`StreamDecoder` bundle a codec with its per-stream state.
"""

from __future__ import annotations

from holo.codec.base import CODECS, Codec, Decoded, Encoded, codec_by_id, get_codec
from holo.codec.packet import (
    FLAG_KEYFRAME,
    FLAG_WORLD,
    CameraInfo,
    Packet,
    PacketLimits,
    Section,
    pack_camera,
    pack_info,
    pack_skeleton,
    unpack_camera,
    unpack_info,
    unpack_skeleton,
)
from holo.errors import CodecError, PacketError
from holo.frame import CoordinateFrame, PersonCloud

__all__ = [
    "CODECS",
    "Codec",
    "Decoded",
    "Encoded",
    "Packet",
    "PacketLimits",
    "StreamDecoder",
    "StreamEncoder",
    "decode_packet",
    "encode_cloud",
    "get_codec",
]


def encode_cloud(cloud: PersonCloud, encoder: object, codec_id: int) -> Packet:
    encoded: Encoded = encoder.encode(cloud)  # type: ignore[attr-defined]
    camera = CameraInfo(
        intrinsics=cloud.intrinsics,
        depth_unit_m=cloud.depth_unit_m or 0.0,
        frame=cloud.frame,
        world_from_camera=cloud.world_from_camera,
        serial=cloud.serial,
    )
    sections = {
        Section.GEOMETRY: encoded.geometry,
        Section.COLOR: encoded.color,
        Section.CAMERA: pack_camera(camera),
    }
    if cloud.skeleton is not None:
        sections[Section.SKELETON] = pack_skeleton(cloud.skeleton)
    if cloud.status:
        sections[Section.INFO] = pack_info({"status": cloud.status})
    flags = (FLAG_KEYFRAME if encoded.keyframe else 0) | (FLAG_WORLD if cloud.frame == "world" else 0)
    return Packet(
        codec_id=codec_id,
        participant=cloud.participant,
        sequence=cloud.sequence,
        capture_time_ns=cloud.capture_time_ns,
        flags=flags,
        sections=sections,
    )


def decode_packet(packet: Packet, decoder: object, limits: PacketLimits | None = None) -> PersonCloud:
    limits = limits or PacketLimits()
    camera_bytes = packet.section(Section.CAMERA)
    camera = unpack_camera(camera_bytes) if camera_bytes is not None else None
    geometry = packet.section(Section.GEOMETRY) or b""
    color = packet.section(Section.COLOR) or b""
    decoded: Decoded = decoder.decode(geometry, color, camera, limits)  # type: ignore[attr-defined]
    skel_bytes = packet.section(Section.SKELETON)
    info_bytes = packet.section(Section.INFO)
    info = unpack_info(info_bytes) if info_bytes else {}
    frame: CoordinateFrame = "world" if packet.flags & FLAG_WORLD else "camera"
    return PersonCloud(
        points_m=decoded.points_m,
        colors=decoded.colors,
        capture_time_ns=packet.capture_time_ns,
        sequence=packet.sequence,
        participant=packet.participant,
        frame=frame,
        intrinsics=camera.intrinsics if camera else None,
        pixels=decoded.pixels,
        depth_unit_m=camera.depth_unit_m if camera and camera.depth_unit_m else None,
        world_from_camera=camera.world_from_camera if camera else None,
        skeleton=unpack_skeleton(skel_bytes) if skel_bytes else None,
        serial=camera.serial if camera else "",
        status=str(info.get("status", "")),
    )


class StreamEncoder:
    """One participant's outgoing stream: a codec's encoder plus packet building."""

    def __init__(self, codec: str = "holo", **options: object) -> None:
        self.codec = get_codec(codec, **options)
        self._encoder = self.codec.encoder()

    def encode(self, cloud: PersonCloud) -> Packet:
        return encode_cloud(cloud, self._encoder, self.codec.codec_id)

    def encode_bytes(self, cloud: PersonCloud) -> bytes:
        return bytes(self.encode(cloud))


class StreamDecoder:
    """Decodes packets of any registered codec; keeps one decoder per (participant, codec)."""

    def __init__(self, limits: PacketLimits | None = None) -> None:
        self.limits = limits or PacketLimits()
        self._decoders: dict[tuple[str, int], object] = {}

    def decode(self, data: bytes | Packet) -> PersonCloud:
        packet = data if isinstance(data, Packet) else Packet.parse(data, self.limits)
        key = (packet.participant, packet.codec_id)
        decoder = self._decoders.get(key)
        if decoder is None:
            codec = codec_by_id(packet.codec_id)
            if codec is None:
                raise PacketError(
                    f"packet uses unknown codec id {packet.codec_id}; known: "
                    + ", ".join(f"{s.codec_id} ({s.name})" for s in CODECS.values())
                )
            decoder = codec.decoder()
            self._decoders[key] = decoder
        try:
            return decode_packet(packet, decoder, self.limits)
        except (PacketError, CodecError):
            raise
        except (ValueError, IndexError, OverflowError, MemoryError) as exc:  # a codec's own check slipped
            raise CodecError(
                f"could not decode {packet.participant}'s packet {packet.sequence}: {exc}"
            ) from None
