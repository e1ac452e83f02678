"""Codecs on real frames: the holo codec is lossless in geometry, >= 33 dB in colour, small."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from holo.capture import CapturePipeline
from holo.codec import StreamDecoder, StreamEncoder, get_codec
from holo.errors import ConfigError
from holo.frame import PersonCloud
from holo.sources import open_source


def person(spec: str) -> PersonCloud:
    with open_source(spec) as src:
        return CapturePipeline().process(next(iter(src)))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def test_holo_codes_five_people_losslessly_in_under_4_bits(five_people: Path) -> None:
    cloud = person(f"pcd:{five_people / 'five_people.pcd'}")
    data = StreamEncoder("holo").encode_bytes(cloud)
    back = StreamDecoder().decode(data)
    bpp = len(data) * 8 / len(cloud)
    quality = psnr(back.colors, cloud.colors)
    print(f"\nholo on five_people: {len(cloud)} points, {bpp:.2f} bits/point, colour {quality:.2f} dB")
    np.testing.assert_array_equal(back.points_m, cloud.points_m)  # bit-identical geometry
    np.testing.assert_array_equal(back.pixels, cloud.pixels)
    assert bpp <= 4.0
    assert quality >= 33.0
    draco = len(StreamEncoder("draco").encode_bytes(cloud)) * 8 / len(cloud)
    assert bpp <= draco / 5


@pytest.mark.parametrize("spec", ["synthetic:2", "k4a", "person"])
def test_holo_round_trips_other_sources(spec: str, azure: Path, person_depth: Path) -> None:
    full = {
        "k4a": f"k4a:{azure / 'recording.mkv'}",
        "person": f"pcd:{person_depth / 'person.pcd'}",
    }.get(spec, spec)
    with open_source(full) as src:
        frame = next(iter(src))
    cloud = CapturePipeline().process(frame)
    if spec == "k4a":  # no person on the mug recording: code the whole registered frame instead
        from holo.geometry import backproject

        points, pixels, flat = backproject(frame.depth_m, frame.intrinsics, frame.depth_m > 0)
        assert frame.color is not None
        cloud = cloud.with_(points_m=points, pixels=pixels, colors=frame.color.reshape(-1, 3)[flat])
    assert len(cloud) > 1000
    back = StreamDecoder().decode(StreamEncoder("holo", color_quality=80).encode_bytes(cloud))
    np.testing.assert_array_equal(back.points_m, cloud.points_m)
    assert psnr(back.colors, cloud.colors) > 30


def test_geometry_precision_knob_bounds_the_error() -> None:
    cloud = person("synthetic")
    lossy = StreamEncoder("holo", geometry_mm=10.0)
    back = StreamDecoder().decode(lossy.encode_bytes(cloud))
    err_z = np.abs(back.points_m[:, 2] - cloud.points_m[:, 2])
    assert err_z.max() <= 0.005 + 1e-6
    assert len(lossy.encode_bytes(cloud)) < len(StreamEncoder("holo").encode_bytes(cloud))


def test_empty_cloud_round_trips() -> None:
    cloud = person("synthetic")
    empty = cloud.with_(
        points_m=np.zeros((0, 3), np.float32),
        colors=np.zeros((0, 3), np.uint8),
        pixels=np.zeros((0, 2), np.uint16),
        status="no person in view",
    )
    for codec in ("holo", "raw", "draco"):
        back = StreamDecoder().decode(StreamEncoder(codec).encode_bytes(empty))
        assert len(back) == 0 and back.status == "no person in view"


@pytest.mark.parametrize("codec", ["draco", "draco-fast"])
def test_draco_round_trip_within_quantisation(codec: str) -> None:
    cloud = person("synthetic")
    back = StreamDecoder().decode(StreamEncoder(codec).encode_bytes(cloud))
    assert len(back) == len(cloud)
    extent = float(np.ptp(cloud.points_m, axis=0).max())
    step = extent / (2**11 - 1)
    a = np.sort(back.points_m[:, 2])
    b = np.sort(cloud.points_m[:, 2])
    assert np.abs(a - b).max() <= step


def test_unknown_codec_and_bad_knobs() -> None:
    with pytest.raises(ConfigError, match="unknown codec 'zip'"):
        get_codec("zip")
    with pytest.raises(ConfigError, match="colour quality"):
        get_codec("holo", color_quality=0)


def test_subsampled_clouds_stay_lossless_and_compact(five_people: Path) -> None:
    """--max-points keeps whole rows/columns; the codec drops the empty ones and codes the rest densely."""
    from holo.capture import CaptureConfig

    with open_source(f"pcd:{five_people / 'five_people.pcd'}") as src:
        frame = next(iter(src))
    for budget in (100_000, 30_000):
        cloud = CapturePipeline(CaptureConfig(max_points=budget)).process(frame)
        data = StreamEncoder("holo").encode_bytes(cloud)
        back = StreamDecoder().decode(data)
        np.testing.assert_array_equal(back.points_m, cloud.points_m)
        np.testing.assert_array_equal(back.pixels, cloud.pixels)
        assert 0.9 * budget < len(cloud) <= budget
        assert len(data) * 8 / len(cloud) < 4.0
