"""The file and synthetic sources decode the shared recordings, and refuse bad input clearly."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from holo.errors import ConfigError, HoloError, IntrinsicsError, SourceError
from holo.frame import Intrinsics
from holo.sources import SourceOptions, open_source

KINECT = (525.0, 525.0, 319.5, 239.5)


def first(spec: str, options: SourceOptions | None = None):  # type: ignore[no-untyped-def]
    with open_source(spec, options) as src:
        return next(iter(src))


# -- synthetic ---------------------------------------------------------------------------------


def test_synthetic_is_deterministic_for_a_seed_and_moves() -> None:
    with open_source("synthetic:3") as a, open_source("synthetic:3") as b, open_source("synthetic:4") as c:
        fa, fb, fc = (list(zip(range(10), s)) for s in (a, b, c))
    np.testing.assert_array_equal(fa[5][1].depth_m, fb[5][1].depth_m)
    np.testing.assert_array_equal(fa[5][1].color, fb[5][1].color)
    assert not np.array_equal(fa[5][1].color, fc[5][1].color)  # another seed, another performer
    moved = np.abs(fa[0][1].depth_m - fa[9][1].depth_m) > 0.05
    assert moved.sum() > 500  # the performer moves between frames


def test_synthetic_performer_is_human_sized() -> None:
    frame = first("synthetic")
    assert frame.truth_mask is not None and frame.truth_skeleton is not None
    joints = frame.truth_skeleton.joints_m
    # Camera frame: y down. Nose to ankle spans roughly a person's height.
    span = joints[:, 1].max() - joints[:, 1].min()
    assert 1.3 < span < 2.0
    z = frame.depth_m[frame.truth_mask & (frame.depth_m > 0)]
    assert 1.7 < np.median(z) < 2.7
    assert frame.truth_mask.sum() > 10_000


def test_synthetic_seed_must_be_a_number() -> None:
    with pytest.raises(ConfigError, match="seed must be an integer"):
        open_source("synthetic:abc")


# -- rgbd folders ----------------------------------------------------------------------------------


def test_rgbd_desk_sequence_reads_intrinsics_and_times_from_files(desk: Path) -> None:
    with open_source(f"rgbd:{desk}") as src:
        frames = list(src)
    assert len(frames) == 3
    f = frames[0]
    assert f.intrinsics == Intrinsics(640, 480, 525.0, 525.0, 320.0, 240.0)
    assert f.color is not None and f.color.shape == (480, 640, 3)
    gaps_ms = np.diff([fr.capture_time_ns for fr in frames]) / 1e6
    assert np.all((gaps_ms > 200) & (gaps_ms < 300))  # ~0.25 s apart, from the file names
    raw = cv2.imread(str(sorted(desk.glob("*_depth.tiff"))[0]), cv2.IMREAD_UNCHANGED)
    np.testing.assert_allclose(f.depth_m, raw.astype(np.float32) / 1000, atol=1e-6)


def test_rgbd_five_people_matches_the_png_pair(five_people: Path) -> None:
    f = first(f"rgbd:{five_people}", SourceOptions(intrinsics=KINECT))
    bgr = cv2.imread(str(five_people / "five_people_color.png"))
    np.testing.assert_array_equal(f.color, bgr[:, :, ::-1])
    assert f.intrinsics.fx == 525.0 and f.intrinsics.width == 640


def test_rgbd_depth_only_folder(person_depth: Path) -> None:
    f = first(f"rgbd:{person_depth}", SourceOptions(intrinsics=KINECT))
    assert f.color is None
    assert 0.5 < np.median(f.depth_m[f.depth_m > 0]) < 4.0


def test_rgbd_without_intrinsics_says_what_to_pass(five_people: Path) -> None:
    with pytest.raises(SourceError, match="pass --intrinsics"):
        first(f"rgbd:{five_people}")


def _copy_pair(five_people: Path, tmp: Path) -> Path:
    shutil.copy(five_people / "five_people_color.png", tmp / "a_color.png")
    shutil.copy(five_people / "five_people_depth_mm.png", tmp / "a_depth.png")
    (tmp / "intrinsics.json").write_text('{"fx": 525, "fy": 525, "cx": 319.5, "cy": 239.5}')
    return tmp


def test_rgbd_intrinsics_json(five_people: Path, tmp_path: Path) -> None:
    f = first(f"rgbd:{_copy_pair(five_people, tmp_path)}")
    assert f.intrinsics.cx == 319.5


def test_rgbd_truncated_png_names_the_file(five_people: Path, tmp_path: Path) -> None:
    folder = _copy_pair(five_people, tmp_path)
    data = (folder / "a_depth.png").read_bytes()
    (folder / "a_depth.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match=r"a_depth\.png is truncated or corrupt"):
        first(f"rgbd:{folder}")


def test_rgbd_depth_that_is_not_16_bit(five_people: Path, tmp_path: Path) -> None:
    folder = _copy_pair(five_people, tmp_path)
    depth = cv2.imread(str(folder / "a_depth.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(folder / "a_depth.png"), (depth // 40).astype(np.uint8))
    with pytest.raises(SourceError, match=r"a_depth\.png is 8-bit uint8; expected 16-bit"):
        first(f"rgbd:{folder}")


def test_rgbd_mismatched_sizes(five_people: Path, tmp_path: Path) -> None:
    folder = _copy_pair(five_people, tmp_path)
    color = cv2.imread(str(folder / "a_color.png"))
    cv2.imwrite(str(folder / "a_color.png"), cv2.resize(color, (320, 240)))
    with pytest.raises(SourceError, match=r"a_color\.png is 320×240 but depth .*a_depth\.png is 640×480"):
        first(f"rgbd:{folder}")


def test_rgbd_absurd_intrinsics_file(five_people: Path, tmp_path: Path) -> None:
    folder = _copy_pair(five_people, tmp_path)
    (folder / "intrinsics.json").write_text('{"fx": 2, "fy": 525, "cx": 319.5, "cy": 239.5}')
    with pytest.raises(IntrinsicsError, match=r"intrinsics\.json: .*field of view"):
        first(f"rgbd:{folder}")


def test_rgbd_missing_or_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        open_source(f"rgbd:{tmp_path / 'nope'}")
    with pytest.raises(SourceError, match="no depth images"):
        open_source(f"rgbd:{tmp_path}")


# -- organised PCD ----------------------------------------------------------------------------------


def test_pcd_five_people_is_the_same_frame_as_the_png_pair(five_people: Path) -> None:
    f = first(f"pcd:{five_people / 'five_people.pcd'}")
    # Intrinsics recovered from the organised cloud itself.
    assert f.intrinsics.fx == pytest.approx(525.0, abs=1e-3)
    assert f.intrinsics.cx == pytest.approx(319.5, abs=1e-3)
    depth_mm = cv2.imread(str(five_people / "five_people_depth_mm.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_allclose(f.depth_m * 1000, depth_mm, atol=0.01)
    bgr = cv2.imread(str(five_people / "five_people_color.png"))
    np.testing.assert_array_equal(f.color, bgr[:, :, ::-1])


def test_pcd_without_colour(person_depth: Path) -> None:
    f = first(f"pcd:{person_depth / 'person.pcd'}")
    assert f.color is None
    depth_mm = cv2.imread(str(person_depth / "person_depth_mm.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_allclose(f.depth_m * 1000, depth_mm, atol=0.01)


def test_pcd_truncated(five_people: Path, tmp_path: Path) -> None:
    data = (five_people / "five_people.pcd").read_bytes()
    bad = tmp_path / "cut.pcd"
    bad.write_bytes(data[: len(data) * 2 // 5])
    with pytest.raises(SourceError, match=r"cut\.pcd is truncated or corrupt"):
        first(f"pcd:{bad}")


def test_pcd_garbage_and_missing(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pcd"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(SourceError, match=r"junk\.pcd is not a PCD file"):
        first(f"pcd:{junk}")
    with pytest.raises(SourceError, match=r"missing\.pcd does not exist"):
        open_source(f"pcd:{tmp_path / 'missing.pcd'}")


def test_every_source_error_is_a_holo_error() -> None:
    assert issubclass(SourceError, HoloError) and issubclass(IntrinsicsError, HoloError)
