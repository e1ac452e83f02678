"""The packet format: round trips, golden bytes, and hostile input (aiortc test_rtp style)."""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from holo.codec import StreamDecoder, StreamEncoder
from holo.codec.holo import MODE_OCTREE
from holo.codec.packet import (
    FLAG_KEYFRAME,
    BadMagicError,
    CameraInfo,
    ChecksumError,
    LimitExceededError,
    Packet,
    PacketLimits,
    Section,
    SectionError,
    TruncatedPacketError,
    UnknownVersionError,
    pack_camera,
    unpack_camera,
)
from holo.errors import HoloError, PacketError
from holo.frame import Intrinsics, PersonCloud, Skeleton, depth_from_units
from holo.geometry import backproject

GOLDEN = Path(__file__).parent / "golden"
K = Intrinsics(width=8, height=6, fx=7.0, fy=7.0, cx=3.5, cy=2.5)


def tiny_cloud() -> PersonCloud:
    """A 3x2-pixel organised cloud with a skeleton: small enough to pin byte for byte."""
    depth = np.zeros((6, 8), np.float32)
    depth[1:3, 2:5] = depth_from_units(np.array([[1000, 1001, 1002], [1010, 1011, 1500]]), 0.001)
    points, pixels, _ = backproject(depth, K, depth > 0)
    colors = np.array(
        [[200, 10, 10], [10, 200, 10], [10, 10, 200], [90, 90, 90], [250, 250, 250], [0, 0, 0]], np.uint8
    )
    pose = np.eye(4)
    pose[:3, 3] = (0.0, 1.2, 0.0)
    skeleton = Skeleton(
        joints_m=np.arange(99, dtype=np.float32).reshape(33, 3) / 100,
        visibility=np.linspace(0, 1, 33).astype(np.float32),
    )
    return PersonCloud(
        points_m=points,
        colors=colors,
        capture_time_ns=1_700_000_000_123_456_789,
        sequence=42,
        participant="ana",
        intrinsics=K,
        pixels=pixels,
        depth_unit_m=0.001,
        world_from_camera=pose,
        skeleton=skeleton,
        serial="cam-1",
    )


def octree_cloud() -> PersonCloud:
    """3000 points scattered over a gently curved, smoothly coloured patch two metres in front of the
    origin, in the world frame and without pixels: coded by the octree (perspective colour image)."""
    uv = np.random.default_rng(7).uniform(-0.5, 0.5, size=(3000, 2))
    x, y = uv[:, 0] * 0.6, uv[:, 1]
    points = np.stack([x, y, 2.0 - 0.5 * (x * x + 0.5 * y * y)], axis=1).astype(np.float32)
    colors = np.stack(
        [(uv[:, 0] + 0.5) * 200 + 30, (uv[:, 1] + 0.5) * 180 + 40, 120 + 60 * uv[:, 0] * uv[:, 1]], axis=1
    ).astype(np.uint8)
    return PersonCloud(
        points_m=points,
        colors=colors,
        capture_time_ns=1_700_000_000_987_654_321,
        sequence=7,
        participant="bo",
        frame="world",
    )


def check_golden(name: str, data: bytes) -> bytes:
    """``data`` must equal the stored golden file (HOLO_UPDATE_GOLDEN=1 rewrites it); returns the file's bytes."""
    path = GOLDEN / f"{name}.holo"
    if os.environ.get("HOLO_UPDATE_GOLDEN") == "1":
        path.write_bytes(data)
    assert path.exists(), f"{path} is missing (HOLO_UPDATE_GOLDEN=1 writes it)"
    golden = path.read_bytes()
    assert data == golden, f"the {name} packet bytes changed; if intended, delete {path} and rerun"
    return golden


def test_round_trip_keeps_every_field() -> None:
    packet = Packet(
        codec_id=0,
        participant="bø",
        sequence=7,
        capture_time_ns=-5,
        flags=FLAG_KEYFRAME,
        sections={Section.GEOMETRY: b"abc", Section.INFO: b"{}"},
    )
    data = bytes(packet)
    assert Packet.parse(data) == packet
    assert bytes(Packet.parse(data)) == data


@pytest.mark.parametrize("codec", ["raw", "holo"])
def test_golden_packets_pin_the_format(codec: str) -> None:
    """Re-encoding the tiny cloud must give the stored bytes; a format change must update them on purpose."""
    golden = check_golden(f"tiny_{codec}", StreamEncoder(codec).encode_bytes(tiny_cloud()))
    cloud = StreamDecoder().decode(golden)
    ref = tiny_cloud()
    assert (
        cloud.participant == "ana" and cloud.sequence == 42 and cloud.capture_time_ns == ref.capture_time_ns
    )
    np.testing.assert_array_equal(cloud.points_m, ref.points_m)
    assert cloud.intrinsics == K and cloud.serial == "cam-1"
    np.testing.assert_allclose(cloud.world_from_camera, ref.world_from_camera)
    assert cloud.skeleton is not None
    np.testing.assert_array_equal(cloud.skeleton.joints_m, ref.skeleton.joints_m)  # type: ignore[union-attr]


def test_golden_octree_packet_pins_the_format() -> None:
    """The octree mode (an unorganised world-frame cloud) pinned byte for byte like the tiny clouds:
    its geometry an octree at a 5 mm grid, its colour a projected JPEG image (not raw colours)."""
    step = 0.005
    ref = octree_cloud()
    golden = check_golden("octree_holo", StreamEncoder("holo", octree_mm=step * 1000).encode_bytes(ref))
    packet = Packet.parse(golden)
    assert packet.sections[Section.GEOMETRY][0] == MODE_OCTREE
    color = packet.sections[Section.COLOR]
    assert color[:4] == b"HOCC" and color[5] == 1  # perspective projection to a JPEG (3 would be raw)
    cloud = StreamDecoder().decode(golden)
    assert (cloud.participant, cloud.sequence, cloud.capture_time_ns) == ("bo", 7, ref.capture_time_ns)
    assert cloud.frame == "world" and cloud.pixels is None and cloud.intrinsics is None
    # one decoded point per occupied voxel of the grid (origin: the cloud's minimum), at its centre
    origin = ref.points_m.min(axis=0).astype(np.float64)
    q_in = np.floor((ref.points_m - origin) / step).astype(np.int64)
    q_out = np.floor((cloud.points_m - origin) / step).astype(np.int64)
    voxels, voxel_of_point = np.unique(q_in, axis=0, return_inverse=True)
    assert len(cloud) == len(voxels) < len(ref)  # some points share a voxel
    order = np.lexsort(q_out.T[::-1])
    np.testing.assert_array_equal(q_out[order], voxels)
    np.testing.assert_allclose(cloud.points_m[order], origin + (voxels + 0.5) * step, atol=1e-6)
    err = cloud.colors[order][voxel_of_point.reshape(-1)].astype(np.float64) - ref.colors
    assert 10 * np.log10(255**2 / float((err**2).mean())) > 30


def test_every_truncated_prefix_is_refused_clearly() -> None:
    data = StreamEncoder("holo").encode_bytes(tiny_cloud())
    for cut in range(len(data)):
        with pytest.raises(PacketError) as info:
            Packet.parse(data[:cut])
        assert isinstance(info.value, TruncatedPacketError | BadMagicError), (cut, info.value)


def test_every_flipped_byte_is_refused() -> None:
    data = bytearray(StreamEncoder("holo").encode_bytes(tiny_cloud()))
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x5A
        with pytest.raises(PacketError):
            StreamDecoder().decode(bytes(bad))


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (lambda d: b"JUNK" + d[4:], BadMagicError, "not a Holo packet: bad magic b'JUNK'"),
        (lambda d: d[:4] + b"\x09" + d[5:], UnknownVersionError, "unknown packet format version 9"),
        (lambda d: d[:-1] + bytes([d[-1] ^ 1]), ChecksumError, "CRC mismatch"),
        (lambda d: d + b"xx", SectionError, "trailing garbage"),
        (lambda d: d[:8] + struct.pack("!I", 1 << 30) + d[12:], LimitExceededError, "over the"),
    ],
)
def test_exact_errors(mutate, error, message) -> None:  # type: ignore[no-untyped-def]
    data = StreamEncoder("raw").encode_bytes(tiny_cloud())
    with pytest.raises(error, match=message.replace("(", r"\(")):
        Packet.parse(mutate(data))


def _reseal(body: bytes) -> bytes:
    """Fix the length and CRC of a hand-made packet, so only its inner inconsistency remains."""
    body = body[:8] + struct.pack("!I", len(body) + 4) + body[12:]
    return body + struct.pack("!I", zlib.crc32(body))


def test_section_longer_than_the_packet_is_refused_before_allocation() -> None:
    header = struct.pack("!4sBBHIIqB", b"HOLO", 1, 0, 0, 0, 1, 0, 1) + b"a"
    body = header + bytes([1]) + struct.pack("!BI", Section.GEOMETRY, 0xFFFFFFF0) + b"xyz"
    with pytest.raises(SectionError, match="geometry section too long: 4294967280 bytes declared"):
        Packet.parse(_reseal(body))


def test_raw_packet_claiming_too_many_points() -> None:
    header = struct.pack("!4sBBHIIqB", b"HOLO", 1, 0, 0, 0, 1, 0, 1) + b"a"
    geometry = struct.pack("!I", 10**9)
    body = header + bytes([2]) + struct.pack("!BI", 1, 4) + geometry + struct.pack("!BI", 2, 0)
    with pytest.raises(LimitExceededError, match="over the 2000000-point limit"):
        StreamDecoder().decode(_reseal(body))


def test_limits_are_configurable() -> None:
    data = StreamEncoder("raw").encode_bytes(tiny_cloud())
    with pytest.raises(LimitExceededError):
        Packet.parse(data, PacketLimits(max_bytes=100))
    with pytest.raises(LimitExceededError, match="over the 5-point limit"):
        StreamDecoder(PacketLimits(max_points=5)).decode(data)


def test_unknown_codec_id() -> None:
    packet = Packet(codec_id=77, participant="x", sequence=0, capture_time_ns=0)
    with pytest.raises(PacketError, match="unknown codec id 77"):
        StreamDecoder().decode(bytes(packet))


def test_camera_section_refuses_impossible_intrinsics() -> None:
    good = pack_camera(CameraInfo(K, 0.001, "camera", None, "s"))
    assert unpack_camera(good).intrinsics == K
    bad = bytearray(good)
    bad[4:12] = struct.pack("!d", 0.0001)  # fx
    with pytest.raises(SectionError, match="impossible intrinsics"):
        unpack_camera(bytes(bad))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_mutated_packets_raise_only_holo_errors(data: st.DataObject) -> None:
    """Hypothesis mutates real packets of every codec (CI runs 300 per test; bench/fuzz_packets.py runs 100,000+)."""
    codec = data.draw(st.sampled_from(["raw", "holo", "draco"]))
    base = bytearray(StreamEncoder(codec).encode_bytes(tiny_cloud()))
    ops = data.draw(st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)), max_size=6))
    for pos, value in ops:
        base[pos] = value
    cut = data.draw(st.integers(0, len(base)))
    candidate = bytes(base[:cut])
    if data.draw(st.booleans()):
        candidate = _reseal(candidate[:-4]) if len(candidate) > 30 else candidate  # reach past the CRC
    with contextlib.suppress(HoloError):
        StreamDecoder().decode(candidate)


def test_a_draco_payload_declaring_too_many_points_is_refused_before_draco_allocates() -> None:
    """Found by bench/fuzz_packets.py: 23 kB of Draco declaring 1.4 billion points made Draco allocate
    over 20 GB. The header is read first now."""
    from holo.capture import CapturePipeline
    from holo.sources import open_source

    with open_source("synthetic") as src:
        cloud = CapturePipeline().process(next(iter(src)))
    for codec in ("draco", "draco-fast"):
        packet = Packet.parse(StreamEncoder(codec).encode_bytes(cloud))
        kind = min(packet.sections)
        geometry = bytearray(packet.sections[kind])
        assert struct.unpack_from("<i", geometry, 11)[0] == len(cloud)
        struct.pack_into("<i", geometry, 11, 1_396_873_974)
        hostile = bytes(
            Packet(
                packet.codec_id,
                packet.participant,
                packet.sequence,
                packet.capture_time_ns,
                packet.flags,
                {**packet.sections, kind: bytes(geometry)},
            )
        )
        with pytest.raises(LimitExceededError, match="declares 1396873974 points"):
            StreamDecoder().decode(hostile)
