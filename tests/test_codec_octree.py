"""The octree codec for unorganised clouds: exact to the voxel grid, >= 33 dB colour at the default
quality, a third of Draco's bits, and nothing but CodecError on hostile payloads.

The real clouds are shuffled first, so the codec sees them in no useful order.
"""

from __future__ import annotations

import functools
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from holo.codec.octree import MAX_DEPTH, decode_unorganized, encode_unorganized
from holo.errors import CodecError

GRID_BITS = 11  # "equal quantisation" with Draco's 11-bit mode
LIMIT = 2_000_000


@functools.cache
def five_people_cloud(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    from holo.capture import CapturePipeline
    from holo.sources import open_source

    with open_source(f"pcd:{folder / 'five_people.pcd'}") as src:
        cloud = CapturePipeline().process(next(iter(src)))
    return shuffled(cloud.points_m, cloud.colors)


@functools.cache
def desk_cloud(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    from holo.geometry import backproject
    from holo.sources import open_source

    with open_source(f"rgbd:{folder}") as src:
        frame = next(iter(src))
    points, _, flat = backproject(frame.depth_m, frame.intrinsics, frame.depth_m > 0)
    assert frame.color is not None
    return shuffled(points, frame.color.reshape(-1, 3)[flat])


def shuffled(points: np.ndarray, colors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(0).permutation(len(points))
    return np.ascontiguousarray(points[order], np.float32), np.ascontiguousarray(colors[order], np.uint8)


def draco_step(points: np.ndarray) -> float:
    """Draco's quantisation step at GRID_BITS: the bounding box's largest extent over 2**bits - 1."""
    extent = points.max(axis=0).astype(np.float64) - points.min(axis=0)
    return float(extent.max()) / (2**GRID_BITS - 1)


def distinct_voxels(points: np.ndarray, step: float) -> int:
    origin = points.min(axis=0).astype(np.float64)
    q = np.floor((points.astype(np.float64) - origin) * (1.0 / step)).astype(np.int64)
    return len(np.unique(q, axis=0))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def check_round_trip(
    points: np.ndarray, colors: np.ndarray, step: float, quality: int = 75
) -> dict[str, float]:
    """Code and decode; every input point must lie within step/2 (per axis) of a decoded voxel centre,
    one decoded point per distinct voxel. Returns sizes and the colour PSNR over the input points
    (each against the colour decoded for the voxel it fell in)."""
    from scipy.spatial import cKDTree

    geometry, color = encode_unorganized(points, colors, step_m=step, color_quality=quality)
    decoded, decoded_colors = decode_unorganized(geometry, color, max_points=LIMIT)
    assert decoded.dtype == np.float32 and decoded.shape == (len(decoded), 3)
    assert decoded_colors.dtype == np.uint8 and decoded_colors.shape == decoded.shape
    assert len(decoded) == distinct_voxels(points, step)
    distance, nearest = cKDTree(decoded.astype(np.float64)).query(points.astype(np.float64), p=np.inf)
    assert distance.max() <= step / 2 + 1e-6
    return {
        "geometry_bpp": len(geometry) * 8 / len(points),
        "color_bpp": len(color) * 8 / len(points),
        "bpp": (len(geometry) + len(color)) * 8 / len(points),
        "psnr": psnr(decoded_colors[nearest], colors),
    }


def draco_bpp(points: np.ndarray, colors: np.ndarray) -> float:
    import DracoPy

    data = DracoPy.encode(points, quantization_bits=GRID_BITS, colors=colors, compression_level=10)
    return len(data) * 8 / len(points)


# -- real clouds -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["five_people", "desk"])
def test_real_clouds_round_trip_at_a_third_of_dracos_bits(name: str, request: pytest.FixtureRequest) -> None:
    folder = request.getfixturevalue(name)
    points, colors = (five_people_cloud if name == "five_people" else desk_cloud)(folder)
    stats = check_round_trip(points, colors, draco_step(points))
    draco = draco_bpp(points, colors)
    print(
        f"\n{name}: {len(points)} points, geometry {stats['geometry_bpp']:.2f} + colour "
        f"{stats['color_bpp']:.2f} = {stats['bpp']:.2f} bits/point (Draco {draco:.2f}), {stats['psnr']:.2f} dB"
    )
    assert stats["psnr"] >= 33.0
    assert stats["bpp"] <= draco / 3


def test_quality_knob_trades_bits_for_fidelity(five_people: Path) -> None:
    points, colors = five_people_cloud(five_people)
    step = draco_step(points)
    low = check_round_trip(points, colors, step, quality=30)
    high = check_round_trip(points, colors, step, quality=95)
    assert low["color_bpp"] < high["color_bpp"]
    assert low["psnr"] < high["psnr"]
    assert high["psnr"] >= 38


def test_encoding_is_deterministic(five_people: Path) -> None:
    points, colors = five_people_cloud(five_people)
    step = draco_step(points)
    assert encode_unorganized(points, colors, step_m=step) == encode_unorganized(points, colors, step_m=step)


def test_input_order_does_not_matter(desk: Path) -> None:
    points, colors = desk_cloud(desk)
    step = draco_step(points)
    order = np.random.default_rng(7).permutation(len(points))
    assert encode_unorganized(points, colors, step_m=step) == encode_unorganized(
        points[order], colors[order], step_m=step
    )


# -- synthetic clouds and edge cases -----------------------------------------------------------------


def sphere(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    return p.astype(np.float32), ((p + 1) * 127.5).astype(np.uint8)


def test_a_cloud_around_the_origin_round_trips_orthographically() -> None:
    points, colors = sphere(20000)
    stats = check_round_trip(points, colors, 0.005)
    assert stats["psnr"] > 20  # colour leaks between the near and far side where pixels are shared


def test_empty_cloud() -> None:
    geometry, color = encode_unorganized(
        np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), step_m=0.01
    )
    points, colors = decode_unorganized(geometry, color, max_points=LIMIT)
    assert points.shape == (0, 3) and colors.shape == (0, 3)


def test_one_point() -> None:
    geometry, color = encode_unorganized(
        np.array([[0.25, -1.0, 2.0]], np.float32), np.array([[10, 200, 30]], np.uint8), step_m=0.01
    )
    points, colors = decode_unorganized(geometry, color, max_points=LIMIT)
    np.testing.assert_allclose(points, [[0.255, -0.995, 2.005]], atol=1e-6)
    np.testing.assert_array_equal(colors, [[10, 200, 30]])


def test_identical_points_merge_into_one_voxel_with_the_mean_colour() -> None:
    points = np.tile(np.array([[1.0, 2.0, 3.0]], np.float32), (4, 1))
    colors = np.array([[0, 0, 0], [100, 100, 100], [200, 200, 200], [100, 0, 40]], np.uint8)
    geometry, color = encode_unorganized(points, colors, step_m=0.001)
    decoded, decoded_colors = decode_unorganized(geometry, color, max_points=LIMIT)
    assert len(decoded) == 1
    np.testing.assert_array_equal(decoded_colors, [[100, 75, 85]])


def test_points_in_one_voxel_merge_and_the_rest_survive() -> None:
    points = np.array([[0, 0, 1], [0.0004, 0.0004, 1.0004], [0.5, 0.5, 1.5], [1, 0, 2]], np.float32)
    colors = np.array([[10, 10, 10], [30, 30, 30], [255, 0, 0], [0, 0, 255]], np.uint8)
    check_round_trip(points, colors, 0.001)
    geometry, color = encode_unorganized(points, colors, step_m=0.001)
    decoded, decoded_colors = decode_unorganized(geometry, color, max_points=LIMIT)
    by_position = {tuple(np.round(p, 2)): tuple(c) for p, c in zip(decoded, decoded_colors)}
    assert by_position == {(0, 0, 1): (20, 20, 20), (0.5, 0.5, 1.5): (255, 0, 0), (1, 0, 2): (0, 0, 255)}


def test_a_kilometre_at_a_millimetre_is_coded() -> None:
    points = np.array([[0, 0, 1], [1000, 0, 1], [500, 2.5, 3], [999.9995, 0.0005, 1]], np.float32)
    colors = np.arange(12, dtype=np.uint8).reshape(4, 3)
    check_round_trip(points, colors, 0.001)


def test_a_deep_grid_with_many_points_is_coded() -> None:
    """20 grid bits and 5000 points: code and point index no longer share one sort key."""
    points, colors = sphere(5000, seed=4)
    points[0] = (0, 0, 1000)  # a kilometre from the rest
    check_round_trip(points, colors, 0.001)


def test_a_span_past_the_grid_is_refused() -> None:
    points = np.array([[0, 0, 1], [10_000, 0, 1]], np.float32)
    with pytest.raises(CodecError, match=f"{MAX_DEPTH}-bit grid"):
        encode_unorganized(points, np.zeros((2, 3), np.uint8), step_m=0.001)


@pytest.mark.parametrize(
    ("points", "colors", "kwargs", "message"),
    [
        (np.zeros((3, 2), np.float32), np.zeros((3, 3), np.uint8), {}, "N x 3 float"),
        (np.zeros((3, 3), np.int32), np.zeros((3, 3), np.uint8), {}, "N x 3 float"),
        (np.zeros((3, 3), np.float32), np.zeros((2, 3), np.uint8), {}, "colours"),
        (np.zeros((3, 3), np.float32), np.zeros((3, 3), np.float32), {}, "colours"),
        (np.array([[0, 0, np.nan]] * 3, np.float32), np.zeros((3, 3), np.uint8), {}, "non-finite"),
        (np.zeros((3, 3), np.float32), np.zeros((3, 3), np.uint8), {"step_m": 0.0}, "positive"),
        (np.zeros((3, 3), np.float32), np.zeros((3, 3), np.uint8), {"step_m": float("inf")}, "positive"),
        (np.zeros((3, 3), np.float32), np.zeros((3, 3), np.uint8), {"color_quality": 0}, "quality"),
        (np.zeros((3, 3), np.float32), np.zeros((3, 3), np.uint8), {"color_quality": 101}, "quality"),
    ],
)
def test_bad_input_is_refused(points: np.ndarray, colors: np.ndarray, kwargs: dict, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        encode_unorganized(points, colors, **({"step_m": 0.01} | kwargs))


def test_float64_points_are_accepted() -> None:
    points, colors = sphere(2000, seed=3)
    check_round_trip(points.astype(np.float64), colors, 0.01)


# -- hostile payloads ------------------------------------------------------------------------------


@functools.cache
def payloads() -> tuple[bytes, bytes]:
    points, colors = sphere(3000, seed=1)
    return encode_unorganized(points + np.float32(3), colors, step_m=0.004)  # in front: perspective


def refuses(geometry: bytes, color: bytes, max_points: int = LIMIT) -> None:
    with pytest.raises(CodecError):
        decode_unorganized(geometry, color, max_points=max_points)


def decodes_or_refuses(geometry: bytes, color: bytes) -> None:
    """A payload whose checksum is right but whose content is garbage: a clean refusal, or (rarely,
    when the garbage happens to be consistent) some voxels."""
    try:
        points, colors = decode_unorganized(geometry, color, max_points=LIMIT)
    except CodecError:
        return
    assert points.shape == colors.shape and points.shape[1:] == (3,)


@pytest.mark.timeout(60)
def test_truncated_payloads_are_refused() -> None:
    geometry, color = payloads()
    for cut in range(0, len(geometry), max(1, len(geometry) // 97)):
        refuses(geometry[:cut], color)
    for cut in range(0, len(color), max(1, len(color) // 97)):
        refuses(geometry, color[:cut])


@pytest.mark.timeout(60)
def test_random_and_flipped_bytes_are_refused() -> None:
    geometry, color = payloads()
    rng = np.random.default_rng(5)
    for size in (0, 1, 10, 45, 46, 47, 100, 1000, len(geometry)):
        refuses(rng.bytes(size), color)
        refuses(geometry, rng.bytes(size))
    for _ in range(200):
        g = bytearray(geometry)
        g[rng.integers(len(g))] ^= 1 << int(rng.integers(8))
        refuses(bytes(g), color)
        c = bytearray(color)
        c[rng.integers(len(c))] ^= 1 << int(rng.integers(8))
        refuses(geometry, bytes(c))


def reheader(payload: bytes, fmt: str, index: int, value: object) -> bytes:
    """The payload with one header field replaced and its CRC-32 (the header's last field, over
    everything else) recomputed."""
    header = struct.Struct(fmt)
    fields = list(header.unpack_from(payload, 0))
    fields[index] = value
    return seal(header.pack(*fields)[:-4], payload[header.size :])


def seal(head: bytes, body: bytes) -> bytes:
    return head + struct.pack("<I", zlib.crc32(body, zlib.crc32(head))) + body


GEOMETRY_HEADER = "<4sBBI4dI"
COLOR_HEADER = "<4sBBBBI5d9d3dIIIII"


@pytest.mark.timeout(60)
def test_lying_headers_are_refused() -> None:
    geometry, color = payloads()
    refuses(reheader(geometry, GEOMETRY_HEADER, 3, 10**9), color)  # a billion points
    refuses(reheader(geometry, GEOMETRY_HEADER, 3, 10**9), color, max_points=2 * 10**9)  # more than the tree
    refuses(geometry, color, max_points=100)
    refuses(reheader(geometry, GEOMETRY_HEADER, 0, b"XXXX"), color)
    refuses(reheader(geometry, GEOMETRY_HEADER, 1, 9), color)  # a future version
    refuses(reheader(geometry, GEOMETRY_HEADER, 2, 40), color)  # a deeper grid than supported
    refuses(reheader(geometry, GEOMETRY_HEADER, 7, -1.0), color)  # negative step
    refuses(reheader(geometry, GEOMETRY_HEADER, 4, float("nan")), color)
    for depth in (1, 3, 9, 20):  # the stream read as a tree of another depth
        decodes_or_refuses(reheader(geometry, GEOMETRY_HEADER, 2, depth), color)
    count = struct.unpack_from("<I", geometry, 6)[0]
    refuses(reheader(geometry, GEOMETRY_HEADER, 3, count - 1), color)
    refuses(reheader(geometry, GEOMETRY_HEADER, 3, count + 1), color)
    refuses(reheader(color, COLOR_HEADER, 5, count + 1), color)
    refuses(geometry, reheader(color, COLOR_HEADER, 2, 7))  # unknown projection
    refuses(geometry, reheader(color, COLOR_HEADER, 6, 0.0))  # zero scale
    refuses(geometry, reheader(color, COLOR_HEADER, 23, 60000))  # a huge grid
    refuses(geometry, reheader(color, COLOR_HEADER, 26, 9999))  # canvas the geometry does not need
    other_points, other_colors = sphere(100, seed=9)
    other_geometry, other_color = encode_unorganized(other_points + np.float32(3), other_colors, step_m=0.004)
    refuses(geometry, other_color)  # payloads of two different clouds
    refuses(other_geometry, color)


@pytest.mark.timeout(60)
def test_garbage_with_a_valid_checksum_never_escapes_as_another_error() -> None:
    geometry, color = payloads()
    rng = np.random.default_rng(11)
    g_head, c_head = struct.calcsize(GEOMETRY_HEADER), struct.calcsize(COLOR_HEADER)
    for _ in range(60):
        body = bytearray(geometry[g_head:])
        for _ in range(int(rng.integers(1, 8))):
            body[rng.integers(len(body))] = int(rng.integers(256))
        g = geometry[:g_head] + bytes(body)
        decodes_or_refuses(reheader(g, GEOMETRY_HEADER, 3, struct.unpack_from("<I", g, 6)[0]), color)
        jpeg = bytearray(color[c_head:])
        for _ in range(int(rng.integers(1, 8))):
            jpeg[rng.integers(len(jpeg))] = int(rng.integers(256))
        c = color[:c_head] + bytes(jpeg)
        decodes_or_refuses(geometry, reheader(c, COLOR_HEADER, 5, struct.unpack_from("<I", c, 8)[0]))
    random_body = rng.bytes(4000)
    for depth in (1, 5, 11, 20):
        head = struct.pack(GEOMETRY_HEADER, b"HOCT", 1, depth, 5000, 0, 0, 0, 0.01, 0)[:-4]
        decodes_or_refuses(seal(head, random_body), color)


@pytest.mark.timeout(60)
def test_a_projection_that_piles_every_point_in_one_pixel_is_quick() -> None:
    """A hostile colour header may squeeze the whole cloud into one pixel: no quadratic sort."""
    points, colors = sphere(50000, seed=2)
    geometry, color = encode_unorganized(points + np.float32(3), colors, step_m=0.002)
    tiny = reheader(reheader(color, COLOR_HEADER, 6, 1e-9), COLOR_HEADER, 7, 1e-9)
    for index, value in ((8, 0.0), (9, 0.0), (23, 1), (24, 1)):
        tiny = reheader(tiny, COLOR_HEADER, index, value)
    start = time.perf_counter()
    refuses(geometry, tiny)
    assert time.perf_counter() - start < 20
