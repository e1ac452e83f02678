"""The RealSense source, on real librealsense recordings made from the shared Kinect frame.

The recordings are written by pyrealsense2 itself (``software_device`` + ``recorder``, see
``tests/rs_recording.py``) and played back by librealsense, so they exercise the same code path a
RealSense Viewer recording does. No camera is needed.
"""

from __future__ import annotations

import itertools
import sqlite3
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
rs = pytest.importorskip("pyrealsense2")

from holo.errors import CameraNotFoundError, MissingDependencyError, SourceError  # noqa: E402
from holo.frame import RGBDFrame  # noqa: E402
from holo.sources import SourceOptions, open_source, realsense  # noqa: E402
from holo.sources.realsense import open_realsense  # noqa: E402
from tests.rs_recording import PERIOD_MS, T0_MS, write_recording  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kinect_five_people"
FRAMES = 4


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    """The shared five-people frame: depth (uint16 mm) and colour (RGB), registered, 640x480."""
    if not (DATA / "five_people_depth_mm.png").exists():
        pytest.skip(f"shared test data not found at {DATA} (expected beside the checkout in ../shared/data)")
    depth = cv2.imread(str(DATA / "five_people_depth_mm.png"), cv2.IMREAD_UNCHANGED)
    color = cv2.cvtColor(cv2.imread(str(DATA / "five_people_color.png"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert depth.dtype == np.uint16 and depth.shape == (480, 640) and color.shape == (480, 640, 3)
    return depth, color


@pytest.fixture(scope="module")
def recording(images, tmp_path_factory) -> Path:
    """Colour + depth, same intrinsics, no baseline: depth is already registered to colour."""
    path = tmp_path_factory.mktemp("rs") / "five_people.db3"
    write_recording(path, *images, frames=FRAMES)
    return path


def read_all(spec_or_path: str | Path, **options: object) -> list[RGBDFrame]:
    with open_source(f"realsense:{spec_or_path}", SourceOptions(**options)) as source:  # type: ignore[arg-type]
        return list(source)


def test_playback_reads_every_frame_exactly(recording, images) -> None:
    depth_mm, color = images
    frames = read_all(recording)
    assert [f.sequence for f in frames] == list(range(FRAMES))
    for frame in frames:
        assert frame.serial == "123456789"
        assert frame.depth_m.shape == (480, 640) and frame.depth_m.dtype == np.float32
        assert frame.color is not None and frame.color.shape == (480, 640, 3)
        assert frame.intrinsics.fx == pytest.approx(525.0) and frame.intrinsics.cy == pytest.approx(239.5)
        assert frame.depth_unit_m == pytest.approx(0.001)
        # Registered input is passed through untouched: every pixel, holes included.
        np.testing.assert_allclose(frame.depth_m, depth_mm / 1000.0, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(frame.color, color)
    # system_time timestamps are milliseconds since the epoch and come back as capture times.
    expected = [round((T0_MS + n * PERIOD_MS) * 1e6) for n in range(FRAMES)]
    assert [f.capture_time_ns for f in frames] == pytest.approx(expected, abs=1_000)


def test_open_realsense_directly_and_close_twice(recording) -> None:
    source = open_realsense(str(recording), f"realsense:{recording}", SourceOptions())
    assert source.kind == "realsense" and source.serial == "123456789"
    first = next(iter(source))
    assert first.sequence == 0
    source.close()
    source.close()


def test_stopping_early_releases_the_file(recording) -> None:
    for _ in range(3):  # a leaked pipeline would keep the file busy or crash on the next open
        with open_source(f"realsense:{recording}") as source:
            assert next(iter(source)).sequence == 0


def test_loop_starts_over(recording) -> None:
    with open_source(f"realsense:{recording}", SourceOptions(loop=True)) as source:
        frames = list(itertools.islice(source, 3 * FRAMES))
    assert [f.sequence for f in frames] == list(range(3 * FRAMES))


def test_realtime_playback_yields_frames(recording) -> None:
    frames = read_all(recording, realtime=True)
    assert 1 <= len(frames) <= FRAMES


def test_depth_only_recording_has_no_colour(images, tmp_path) -> None:
    path = tmp_path / "depth_only.db3"
    write_recording(path, images[0], frames=3, domain=rs.timestamp_domain.hardware_clock)
    before = time.time_ns()
    frames = read_all(path)
    assert len(frames) == 3
    for frame in frames:
        assert frame.color is None
        np.testing.assert_allclose(frame.depth_m, images[0] / 1000.0, rtol=0, atol=1e-6)
        # A hardware-clock timestamp is not an instant: the arrival time is used instead.
        assert before <= frame.capture_time_ns <= time.time_ns()


def test_depth_is_aligned_to_a_smaller_colour_camera(images, tmp_path) -> None:
    depth_mm, color = images
    small = cv2.resize(color, (320, 240), interpolation=cv2.INTER_AREA)
    path = tmp_path / "half_colour.db3"
    write_recording(path, depth_mm, small, frames=2, color_scale=0.5)
    frames = read_all(path)
    assert len(frames) == 2
    frame = frames[0]
    assert frame.depth_m.shape == (240, 320) and frame.intrinsics.fx == pytest.approx(262.5)
    assert frame.color is not None
    np.testing.assert_array_equal(frame.color, small)
    # Each colour pixel covers a 2x2 block of depth pixels; rs.align keeps the nearest of them.
    aligned = np.round(frame.depth_m * 1000).astype(np.int64)
    blocks = depth_mm.astype(np.int64).reshape(240, 2, 320, 2).transpose(0, 2, 1, 3).reshape(240, 320, 4)
    nearest = np.where(blocks > 0, blocks, np.iinfo(np.int64).max).min(axis=-1)
    valid = aligned > 0
    assert valid.mean() > 0.75
    assert (aligned[valid] == nearest[valid]).mean() > 0.99  # measured 99.5 %


def test_depth_is_reprojected_across_a_baseline(images, tmp_path) -> None:
    depth_mm, color = images
    path = tmp_path / "baseline.db3"
    baseline_m = 0.025
    write_recording(path, depth_mm, color, frames=2, translation_m=(baseline_m, 0.0, 0.0))
    frame = read_all(path)[0]
    aligned = np.round(frame.depth_m * 1000).astype(np.int64)
    v, u = np.nonzero(aligned > 0)
    assert len(v) > 0.7 * aligned.size
    z_mm = aligned[v, u]
    # A point at depth z moves f * b / z pixels to the right in the colour camera.
    source_u = np.round(u - 525.0 * baseline_m * 1000 / z_mm).astype(np.int64)
    matched = np.zeros(len(v), dtype=bool)
    for du in (-1, 0, 1):
        matched |= depth_mm[v, np.clip(source_u + du, 0, 639)] == z_mm
    assert matched.mean() > 0.99  # measured 99.9 %
    assert (depth_mm[v, u] == z_mm).mean() < 0.6  # it really moved (measured 37 % unchanged)


# ---------------------------------------------------------------------------------------------
# Bad input: every refusal is a SourceError that says what is wrong, and nothing hangs.


def test_missing_file_names_the_path(tmp_path) -> None:
    path = tmp_path / "nowhere.bag"
    with pytest.raises(SourceError, match="does not exist") as info:
        open_source(f"realsense:{path}")
    assert str(path) in str(info.value)


@pytest.mark.timeout(60)
def test_truncated_recording_is_refused(recording, tmp_path) -> None:
    data = recording.read_bytes()
    path = tmp_path / "truncated.db3"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match="not a readable RealSense recording") as info:
        read_all(path)
    assert str(path) in str(info.value) and "malformed" in str(info.value)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["x.db3", "x.bag"])
def test_random_bytes_are_refused(tmp_path, name) -> None:
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    with pytest.raises(SourceError, match="not a readable RealSense recording") as info:
        read_all(path)
    assert str(path) in str(info.value)


@pytest.mark.timeout(60)
def test_recording_without_streams_is_refused(tmp_path, images) -> None:
    path = tmp_path / "no_frames.db3"
    write_recording(path, images[0], frames=0)
    with pytest.raises(SourceError, match="holds no video stream"):
        read_all(path)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("damage", ["delete", "garble"])
def test_recording_with_lost_images_ends_without_hanging(recording, tmp_path, damage) -> None:
    path = tmp_path / f"{damage}.db3"
    path.write_bytes(recording.read_bytes())
    with sqlite3.connect(path) as db:  # the image messages of both streams
        topics = [row[0] for row in db.execute("SELECT id FROM topics WHERE name LIKE '%/image/data/%'")]
        assert len(topics) == 2
        marks = ",".join("?" * len(topics))
        if damage == "delete":
            db.execute(f"DELETE FROM messages WHERE topic_id IN ({marks})", topics)
        else:
            db.execute(
                f"UPDATE messages SET data = randomblob(length(data) / 2) WHERE topic_id IN ({marks})", topics
            )
    db.close()
    started = time.monotonic()
    assert read_all(path) == []
    assert time.monotonic() - started < 10


class _SilentPipeline:
    """Stands in for a started pipeline that never delivers (no camera here to unplug)."""

    def __init__(self, real: object) -> None:
        self.real = real

    def wait_for_frames(self, timeout_ms: int) -> None:
        raise RuntimeError(f"Frame didn't arrive within {timeout_ms}")

    def try_wait_for_frames(self, timeout_ms: int) -> tuple[bool, None]:
        time.sleep(timeout_ms / 1000)
        return False, None

    def stop(self) -> None:
        self.real.stop()  # type: ignore[attr-defined]


@pytest.mark.timeout(60)
def test_a_stalled_playback_is_refused(recording, monkeypatch) -> None:
    monkeypatch.setattr(realsense, "_PLAYBACK_STALL_S", 0.5)
    source = open_source(f"realsense:{recording}")
    source._pipe = _SilentPipeline(source._pipe)  # type: ignore[attr-defined]
    source._playback = SimpleNamespace(current_status=lambda: rs.playback_status.playing)  # type: ignore[attr-defined]
    started = time.monotonic()
    with source, pytest.raises(SourceError, match="playback stalled") as info:
        next(iter(source))
    assert str(recording) in str(info.value) and time.monotonic() - started < 5


def test_an_unplugged_camera_is_reported(recording) -> None:
    source = open_source(f"realsense:{recording}")
    source._pipe = _SilentPipeline(source._pipe)  # type: ignore[attr-defined]
    source._playback = None  # type: ignore[attr-defined]  # now it behaves as a live camera
    with (
        source,
        pytest.raises(
            CameraNotFoundError, match=r"RealSense 123456789 stopped sending frames \(unplugged\?\)"
        ),
    ):
        next(iter(source))


def test_wrong_extension_lists_the_supported_ones(tmp_path) -> None:
    path = tmp_path / "frames.txt"
    path.write_text("not a recording")
    with pytest.raises(SourceError, match=r"\.bag .*\.db3") as info:
        open_source(f"realsense:{path}")
    assert str(path) in str(info.value)


def _cameras() -> int:
    return len(rs.context().query_devices())


@pytest.mark.skipif(_cameras() > 0, reason="a RealSense camera is connected")
@pytest.mark.parametrize("spec", ["realsense", "realsense:123456789012"])
def test_live_without_a_camera(spec) -> None:
    with pytest.raises(CameraNotFoundError, match=r"no Intel RealSense camera .*is connected") as info:
        open_source(spec)
    assert "realsense:FILE.bag" in str(info.value)


def test_missing_pyrealsense2_says_what_to_install(monkeypatch, recording) -> None:
    monkeypatch.setitem(sys.modules, "pyrealsense2", None)  # makes `import pyrealsense2` fail
    with pytest.raises(MissingDependencyError, match=r"pyrealsense2.*libusb-1\.0-0"):
        open_source(f"realsense:{recording}")
