"""The Azure Kinect recording source: decoding, depth→colour registration quality, hostile files."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from holo.errors import SourceError
from holo.frame import Intrinsics, RGBDFrame
from holo.sources import SourceOptions, open_source
from holo.sources.k4a import DepthRegistration, parse_calibration

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RECORDING = DATA / "azure_kinect_mkv" / "recording.mkv"

pytestmark = pytest.mark.skipif(
    not RECORDING.exists(), reason=f"the real Azure Kinect recording is not at {RECORDING} (../shared/data)"
)


def _frames(path: Path | str, **options: object) -> list[RGBDFrame]:
    with open_source(f"k4a:{path}", SourceOptions(**options)) as source:  # type: ignore[arg-type]
        return list(source)


def _packets() -> tuple[dict[str, str], bytes, bytes, int]:
    """The container metadata, calibration bytes, first raw depth packet and its pts (µs)."""
    with av.open(str(RECORDING)) as container:
        calibration = bytes(container.streams.attachments[0].data)
        depth = next(s for s in container.streams.video if s.metadata.get("title") == "DEPTH")
        packet = next(p for p in container.demux(depth) if p.size)
        assert packet.pts is not None
        return dict(container.metadata), calibration, bytes(packet), int(packet.pts * packet.time_base * 1e6)


def test_decodes_the_real_recording() -> None:
    frames = _frames(RECORDING)
    metadata, _, _, pts_us = _packets()
    assert len(frames) >= 1
    for frame in frames:
        assert frame.depth_m.shape == (360, 640) and frame.depth_m.dtype == np.float32
        assert (
            frame.color is not None and frame.color.shape == (360, 640, 3) and frame.color.dtype == np.uint8
        )
        assert frame.intrinsics.shape == (360, 640) and 300 < frame.intrinsics.fx < 312  # 611.8 px at 720p
        assert frame.serial == metadata["K4A_DEVICE_SERIAL_NUMBER"] == "001514394512"
        assert frame.depth_unit_m == 0.001
        depth = frame.depth_m[frame.depth_m > 0]
        assert depth.size > 0.4 * frame.depth_m.size
        # A mug on a desk ~0.25 m from the camera, the desk running up to it, a wall 1.4-2.3 m away.
        low, median, high = np.percentile(depth, [1, 50, 99])
        assert 0.1 < low < 0.3 and 1.0 < median < 2.0 and 2.0 < high < 3.0, (low, median, high)
        assert np.allclose(depth * 1000, np.round(depth * 1000), atol=1e-3)  # whole millimetres
    start = datetime.fromisoformat(metadata["creation_time"])
    assert frames[0].capture_time_ns == int(start.timestamp()) * 10**9 + pts_us * 1000
    times = [f.capture_time_ns for f in frames]
    assert times == sorted(set(times)) and [f.sequence for f in frames] == list(range(len(frames)))


def test_loop_keeps_time_increasing_and_realtime_keeps_the_recorded_pace() -> None:
    count = len(_frames(RECORDING))
    with open_source(f"k4a:{RECORDING}", SourceOptions(loop=True, realtime=True)) as source:
        started = time.monotonic()
        frames = list(itertools.islice(source, count * 3 + 1))
        elapsed_s = time.monotonic() - started
    times = np.array([f.capture_time_ns for f in frames])
    assert [f.sequence for f in frames] == list(range(len(frames)))
    assert np.all(np.diff(times) > 0)
    span_s = (times[-1] - times[0]) / 1e9  # 0.6 s: k4arecorder's 200 ms frame period, three loops
    assert span_s * 0.9 < elapsed_s < span_s + 1.0


def test_intrinsics_override_chooses_the_output_camera() -> None:
    small = Intrinsics.from_fov(320, 180, 90.0)
    (frame,) = _frames(RECORDING, intrinsics=small)
    assert frame.intrinsics == small and frame.depth_m.shape == (180, 320) and frame.color is not None
    assert frame.color.shape == (180, 320, 3) and np.mean(frame.depth_m > 0) > 0.4
    (frame,) = _frames(RECORDING, intrinsics=(300.0, 300.0, 320.0, 180.0))
    assert (frame.intrinsics.width, frame.intrinsics.height, frame.intrinsics.fx) == (640, 360, 300.0)


# --- registration quality -------------------------------------------------------------------------


def _depth_edges(depth_m: np.ndarray, jump_m: float = 0.05, min_pixels: int = 20) -> np.ndarray:
    """Both pixels of every 4-neighbour pair of valid depths more than ``jump_m`` apart, in runs of
    at least ``min_pixels`` connected pixels (which drops isolated flying pixels)."""
    edges = np.zeros(depth_m.shape, dtype=bool)
    for axis in (0, 1):
        a = depth_m.take(range(depth_m.shape[axis] - 1), axis=axis)
        b = depth_m.take(range(1, depth_m.shape[axis]), axis=axis)
        jump = (a > 0) & (b > 0) & (np.abs(a - b) > jump_m)
        pad = [(0, 0), (0, 0)]
        pad[axis] = (0, 1)
        edges |= np.pad(jump, pad)
        pad[axis] = (1, 0)
        edges |= np.pad(jump, pad)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(edges.astype(np.uint8), connectivity=8)
    keep = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= min_pixels)
    return np.isin(labels, keep[keep > 0])


def _shifted(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    h, w = mask.shape
    out = np.zeros_like(mask)
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = mask[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def test_registration_lands_depth_edges_on_colour_edges() -> None:
    """Mean distance (px, clipped at 5) from depth-discontinuity pixels to the nearest colour edge.

    Colour edges are Canny's on the grey image; texture (the mug's drawing, the wallpaper) puts one
    within a few pixels of anything, so randomly placed pixels score ~4.1 px and even a perfect
    registration has a floor (measured 1.38 px at 640×360). The true registration must sit at the
    bottom of that bowl: better than every shift of it by 3 px (>= 1.60) and by 6 px (>= 2.24), far
    better than registrations that ignore the extrinsics (4.04: the mug is 0.28 m away, so the 32 mm
    baseline moves it ~35 px) or the lenses (2.77), and no shift within ±6 px may fit markedly better.
    The best shift is 1 px left (1.34 px), all of it from the mug's edges: 0.28 m is under the NFOV
    mode's 0.5 m rated range, where ~6 mm of depth error is enough to move them that far.
    """
    frame = _frames(RECORDING)[0]
    assert frame.color is not None
    grey = cv2.GaussianBlur(cv2.cvtColor(frame.color, cv2.COLOR_RGB2GRAY), (3, 3), 0)
    colour_edges = cv2.Canny(grey, 40, 120)
    distance = cv2.distanceTransform((colour_edges == 0).astype(np.uint8), cv2.DIST_L2, 5)

    def score(edges: np.ndarray) -> float:
        return float(np.minimum(distance[edges], 5.0).mean())

    chance = float(np.minimum(distance, 5.0).mean())
    true_edges = _depth_edges(frame.depth_m)
    true = score(true_edges)
    median = float(np.median(distance[true_edges]))
    shifts = {(dx, dy): score(_shifted(true_edges, dx, dy)) for dx in range(-6, 7) for dy in range(-6, 7)}
    ring3 = {s: v for s, v in shifts.items() if max(abs(s[0]), abs(s[1])) == 3}
    ring6 = {s: v for s, v in shifts.items() if max(abs(s[0]), abs(s[1])) == 6}
    best = min(shifts, key=shifts.__getitem__)

    # Deliberately wrong registrations of the same depth image.
    _, calibration, raw, _ = _packets()
    depth_cam, _ = parse_calibration(calibration, (640, 576), (1280, 720), "test")
    no_extrinsics = DepthRegistration(
        depth_cam, (640, 576), (640, 360), frame.intrinsics.matrix, np.eye(3, 4)
    )(np.frombuffer(raw, ">u2"))
    resized = cv2.resize(
        np.frombuffer(raw, ">u2").reshape(576, 640).astype(np.float32) / 1000,
        (640, 360),
        interpolation=cv2.INTER_NEAREST,
    )
    wrong = {
        "no extrinsics": score(_depth_edges(no_extrinsics)),
        "resized depth image": score(_depth_edges(resized)),
    }

    print(
        f"\nk4a registration: {true_edges.sum()} depth-edge px, colour edges on {np.mean(colour_edges > 0):.1%} of px"
    )
    print(
        f"  true registration: clipped mean {true:.2f} px, median {median:.1f} px (chance: {chance:.2f} px)"
    )
    print(f"  best shift {best}: {shifts[best]:.2f} px")
    print(f"  shifted by 3 px: {min(ring3.values()):.2f}..{max(ring3.values()):.2f} px")
    print(f"  shifted by 6 px: {min(ring6.values()):.2f}..{max(ring6.values()):.2f} px")
    for name, value in wrong.items():
        print(f"  {name}: {value:.2f} px")

    assert true_edges.sum() > 300  # the mug's outline, the window sill: enough to measure
    assert true < 1.6 and median <= 1.0 and true < 0.4 * chance
    assert max(abs(best[0]), abs(best[1])) <= 1 and shifts[best] > true - 0.15
    assert true < 0.9 * min(ring3.values())
    assert true < 0.65 * min(ring6.values())
    assert all(true < 0.6 * value for value in wrong.values())


# --- hostile input ------------------------------------------------------------------------------------


def _remux(
    dst: Path,
    titles: tuple[str, ...],
    calibration: bytes | None,
    depth_bytes: Callable[[bytes], bytes] = bytes,
) -> Path:
    """Copies the named video tracks (and optionally a calibration attachment) into a new MKV."""
    with av.open(str(RECORDING)) as src, av.open(str(dst), "w", options={"allow_raw_vfw": "1"}) as out:
        inputs = [s for s in src.streams.video if s.metadata.get("title") in titles]
        streams = {}
        for stream in inputs:
            streams[stream.index] = out.add_stream_from_template(stream)
            streams[stream.index].metadata.update(stream.metadata)
        if calibration is not None:
            out.add_attachment("calibration.json", "application/octet-stream", calibration)
        for packet in src.demux(*inputs):
            if packet.dts is None:
                continue
            if packet.stream.metadata.get("title") == "DEPTH":
                data, pts, dts, time_base = (
                    depth_bytes(bytes(packet)),
                    packet.pts,
                    packet.dts,
                    packet.time_base,
                )
                packet = av.Packet(data)
                packet.pts, packet.dts, packet.time_base = pts, dts, time_base
                packet.stream = streams[
                    next(i for i, s in streams.items() if s.metadata.get("title") == "DEPTH")
                ]
            else:
                packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return dst


def _patched(tmp_path: Path, old: bytes, new: bytes) -> Path:
    data = RECORDING.read_bytes()
    assert len(old) == len(new) and data.count(old) == 1
    path = tmp_path / "patched.mkv"
    path.write_bytes(data.replace(old, new))
    return path


def test_missing_file_and_missing_name(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"k4a: .*nope\.mkv does not exist"):
        open_source(f"k4a:{tmp_path / 'nope.mkv'}")
    with pytest.raises(SourceError, match=r"k4a:FILE\.mkv"):
        open_source("k4a")


def test_random_bytes_are_not_a_recording(tmp_path: Path) -> None:
    path = tmp_path / "x.mkv"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(SourceError, match=r"x\.mkv is not a Matroska file"):
        open_source(f"k4a:{path}")


def test_another_container_is_not_a_recording(tmp_path: Path) -> None:
    path = tmp_path / "picture.mkv"
    path.write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    with pytest.raises(SourceError, match=r"picture\.mkv is a .*png.* file, not a Matroska recording"):
        open_source(f"k4a:{path}")


def test_recording_without_depth(tmp_path: Path) -> None:
    path = _remux(tmp_path / "colour.mkv", ("COLOR",), _packets()[1])
    with pytest.raises(SourceError, match=r"colour\.mkv has no DEPTH track"):
        open_source(f"k4a:{path}")


def test_recording_without_calibration(tmp_path: Path) -> None:
    path = _remux(tmp_path / "nocal.mkv", ("COLOR", "DEPTH"), None)
    with pytest.raises(SourceError, match=r"nocal\.mkv has no calibration\.json attachment"):
        open_source(f"k4a:{path}")


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (b'{"CalibrationInformation"', b'["CalibrationInformation"', "malformed: .*line 1"),
        (b'"Cameras":', b'"Cameraz":', "malformed: it has no 'Cameras' entry"),
        (
            b'"CALIBRATION_CameraLocationD0"',
            b'"CALIBRATION_CameraLocationXX"',
            "malformed: it has no camera at",
        ),
        (
            b"[0.51296979188919067,",
            b'["0.512969791889190",',
            "malformed: .*ModelParameters must be a list of 14 numbers",
        ),
    ],
)
def test_malformed_calibration(tmp_path: Path, old: bytes, new: bytes, problem: str) -> None:
    path = _patched(tmp_path, old, new)
    with pytest.raises(SourceError, match=rf"patched\.mkv: the calibration attachment is {problem}"):
        open_source(f"k4a:{path}")


def test_truncated_recording_says_where(tmp_path: Path) -> None:
    path = tmp_path / "cut.mkv"
    data = RECORDING.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.4)])  # the first capture's colour, half its depth
    with pytest.raises(SourceError, match=r"cut\.mkv is truncated or corrupt at frame 0"):
        _frames(path)


@pytest.mark.parametrize("fraction", [0.001, 0.003, 0.01, 0.1, 0.2, 0.5, 0.6, 0.9, 0.999])
def test_every_truncation_gives_frames_then_ends_or_says_why(tmp_path: Path, fraction: float) -> None:
    path = tmp_path / "cut.mkv"
    data = RECORDING.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    frames: list[RGBDFrame] = []
    try:
        with open_source(f"k4a:{path}") as source:
            frames.extend(source)
    except SourceError as exc:
        assert "cut.mkv" in str(exc)
    assert all(f.depth_m.shape == (360, 640) for f in frames)


def test_depth_packet_of_the_wrong_size(tmp_path: Path) -> None:
    path = _remux(tmp_path / "short.mkv", ("COLOR", "DEPTH"), _packets()[1], lambda data: data[:1000])
    with pytest.raises(
        SourceError, match=r"short\.mkv: the depth image of frame 0 has 1000 bytes, not 737280"
    ):
        _frames(path)


def test_recording_without_colour_gives_undistorted_depth(tmp_path: Path) -> None:
    path = _remux(tmp_path / "depth.mkv", ("DEPTH",), _packets()[1])
    frames = _frames(path)
    assert len(frames) == 1
    frame, registered = frames[0], _frames(RECORDING)[0]
    assert frame.color is None and frame.depth_m.shape == (576, 640)
    assert frame.intrinsics.width == 640 and abs(frame.intrinsics.fx - 504.6) < 0.5
    assert (
        abs(
            np.median(frame.depth_m[frame.depth_m > 0])
            - np.median(registered.depth_m[registered.depth_m > 0])
        )
        < 0.1
    )
