"""Calibration: the printable board, camera poses against ground truth, ICP, the floor, the file,
bad input, and `holo capture --calibration` fusing cameras into one world-frame cloud.

Ground truth comes from scenes the tests render themselves (:mod:`tests.calib_scene`: Open3D ray
casting of a textured ChArUco board, a person-sized body, boxes and a floor from 1280x720 RGB-D
cameras at known poses, depth noise 1.2 mm x z^2, millimetre quantisation). The world frame the
tests build their scenes in is the one calibration defines: floor at y = 0, +y up, origin at the
board's top-left pattern corner dropped onto the floor, x along the board's top edge. So a
recovered ``world_from_camera`` is compared with the true one directly.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.board import DPI, board_for_page
from calibration.calibfile import CalibrationFile, CameraCalibration, load_calibration, save_calibration
from calibration.detect import detect_board
from calibration.fuse import fuse_clouds, voxel_merge
from calibration.refine import camera_cloud, refine_poses
from calibration.rig import calibrate_rig
from holo.errors import CalibrationError
from holo.frame import Intrinsics, PersonCloud
from tests.calib_scene import (
    Scene,
    VirtualCamera,
    board_on_easel,
    board_on_floor,
    perturb,
    ring_camera,
    rotation_error_deg,
    translation_error_m,
    write_rgbd_folder,
)
from tests.conftest import run_holo

A3 = board_for_page("A3")
MAX_ROT_DEG = 0.5
MAX_POS_M = 0.005


def calibrate_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real `holo calibrate ARGS`."""
    return run_holo("calibrate", *args)


def holo_capture(*args: str) -> tuple[int, str, str]:
    """The real `holo capture ARGS`: exit status, stdout, stderr."""
    done = run_holo("capture", *args)
    return done.returncode, done.stdout, done.stderr


# -- scenes ---------------------------------------------------------------------------------------


def shifted(cameras: list[VirtualCamera], origin: np.ndarray) -> list[VirtualCamera]:
    m = np.eye(4)
    m[:3, 3] = -origin
    return [VirtualCamera(c.serial, m @ c.world_from_camera) for c in cameras]


@pytest.fixture(scope="module")
def flat_rig() -> dict[str, object]:
    """Three cameras 120° apart around an A3 board lying on the floor; a person and two boxes."""
    # The board's top-left pattern corner is the world origin (the board lies 1 mm above the floor).
    board = board_on_floor((0.0, 0.0))
    centre = (0.18, 0.0, 0.13)
    cams = [
        ring_camera(f"cam{i}", az, radius_m=1.4, height_m=1.4, target=centre)
        for i, az in enumerate((0, 120, 240))
    ]
    scene = Scene(
        A3,
        board,
        person_xz=(0.96, 0.58),
        boxes=((-0.72, 0.63, 0.4, 0.5, 0.3, 20.0), (0.28, -0.87, 0.5, 0.7, 0.4, -10.0)),
    )
    frames = [scene.render(c, seed=i) for i, c in enumerate(cams)]
    return {"cams": cams, "frames": frames, "world_from_board": board}


@pytest.fixture(scope="module")
def easel(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Two cameras in front of an A3 board on an easel, one behind it; rgbd folders of the board scene
    and of a person standing where the board stood (the cameras unmoved)."""
    board = board_on_easel((0.0, 0.0), bottom_m=0.75, spec=A3)
    origin = board[:3, 3].copy()
    origin[1] = 0.0  # the world origin: the board's corner dropped onto the floor
    target = (0.0, 0.95, 0.0)
    cams = shifted(
        [
            ring_camera("left", -40, radius_m=2.6, height_m=1.3, target=target),
            ring_camera("right", 35, radius_m=2.6, height_m=1.4, target=target),
            ring_camera("back", 180, radius_m=2.4, height_m=1.3, target=target),
        ],
        origin,
    )
    m = np.eye(4)
    m[:3, 3] = -origin
    boxes = ((1.2, -0.8, 0.5, 0.8, 0.4, 30.0), (-1.3, -0.6, 0.6, 0.5, 0.4, -20.0))
    board_scene = Scene(
        A3, m @ board, boxes=tuple((b[0] - origin[0], b[1] - origin[2], *b[2:]) for b in boxes)
    )
    person_scene = Scene(person_xz=(-origin[0], -origin[2]), person_yaw_deg=180.0)
    root = tmp_path_factory.mktemp("easel")
    for i, cam in enumerate(cams):
        board_frames = [board_scene.render(cam, seed=10 + 3 * i + k, sequence=k) for k in range(3)]
        write_rgbd_folder(root / "board" / cam.serial, board_frames)
        if cam.serial != "back":
            frames = [person_scene.render(cam, seed=20 + i + 2 * k, sequence=k) for k in range(2)]
            write_rgbd_folder(root / "person" / cam.serial, frames)
    return {"cams": {c.serial: c for c in cams}, "root": root, "person_scene": person_scene}


@pytest.fixture(scope="module")
def easel_calibration(easel: dict[str, object]) -> tuple[Path, subprocess.CompletedProcess[str]]:
    root = easel["root"]
    assert isinstance(root, Path)
    out = root / "calibration.json"
    done = calibrate_cli(
        "cameras",
        *(f"--source=rgbd:{root / 'board' / s}" for s in ("left", "right", "back")),
        "--board",
        "A3",
        "--frames",
        "3",
        "--out",
        str(out),
    )
    return out, done


# -- the board ------------------------------------------------------------------------------------


def test_board_png_is_detectable_and_true_to_size(tmp_path: Path) -> None:
    out = tmp_path / "board.png"
    done = calibrate_cli("board", "--out", str(out), "--size", "A4")
    assert done.returncode == 0, done.stderr
    spec = board_for_page("A4")
    assert f"{spec.square_length_m * 1000:.2f} mm" in done.stdout
    from PIL import Image

    with Image.open(out) as im:
        assert im.size == (3508, 2480)  # A4 landscape at 300 dpi
        assert round(im.info["dpi"][0]) == DPI
        page = np.asarray(im.convert("L"))
    detection = detect_board(page, spec)
    assert len(detection) == spec.corner_count
    # Neighbouring corners lie one square apart: measure the square on the page, in millimetres.
    cols = spec.squares_x - 1
    order = np.argsort(detection.ids)
    grid = detection.corners_px[order].reshape(spec.squares_y - 1, cols, 2)
    square_mm = np.mean(np.linalg.norm(np.diff(grid, axis=1), axis=2)) * 25.4 / DPI
    print(f"\nA4 board: printed square {square_mm:.3f} mm, board says {spec.square_length_m * 1000:.3f} mm")
    assert square_mm == pytest.approx(spec.square_length_m * 1000, abs=0.02)
    # The true size is printed on the page, under the board, where there is ink.
    below = page[int(grid[-1, 0, 1]) + 250 :, :]
    assert (below < 128).sum() > 5000
    # Never overwritten without --force.
    before = out.read_bytes()
    again = calibrate_cli("board", "--out", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr
    assert out.read_bytes() == before


def test_board_pdf_a3_page(tmp_path: Path) -> None:
    out = tmp_path / "board.pdf"
    done = calibrate_cli("board", "--out", str(out), "--size", "A3")
    assert done.returncode == 0, done.stderr
    data = out.read_bytes()
    assert data.startswith(b"%PDF")
    assert b"/CCITTFaxDecode" in data or b"/DCTDecode" in data
    box = re.search(rb"/MediaBox \[ 0 0 ([\d.]+) ([\d.]+) \]", data)
    assert box is not None
    width_mm, height_mm = (float(v) / 72 * 25.4 for v in box.groups())
    assert width_mm == pytest.approx(420, abs=0.5) and height_mm == pytest.approx(
        297, abs=0.5
    )  # A3 landscape
    bad = calibrate_cli("board", "--out", str(tmp_path / "board.svg"))
    assert bad.returncode == 2 and ".pdf or .png" in bad.stderr


# -- poses against ground truth --------------------------------------------------------------------


def test_three_cameras_around_a_board_on_the_floor(flat_rig: dict[str, object]) -> None:
    cams, frames = flat_rig["cams"], flat_rig["frames"]
    assert isinstance(cams, list) and isinstance(frames, list)
    result = calibrate_rig(frames, A3)
    assert not result.failures and not result.warnings, result.warnings
    assert result.world.floor is not None
    print()
    for cam in cams:
        got = result.calibration.cameras[cam.serial]
        rot = rotation_error_deg(got.world_from_camera, cam.world_from_camera)
        pos = translation_error_m(got.world_from_camera, cam.world_from_camera)
        print(
            f"{cam.serial}: rotation error {rot:.3f}°, position error {pos * 1000:.2f} mm, "
            f"reprojection {got.reprojection_error_px:.2f} px, ICP residual "
            + ("- (reference)" if got.icp_rms_mm is None else f"{got.icp_rms_mm:.1f} mm ({got.extra['icp']})")
        )
        assert rot <= MAX_ROT_DEG and pos <= MAX_POS_M
        assert got.reprojection_error_px is not None and got.reprojection_error_px < 0.6
        assert got.icp_rms_mm is None or got.icp_rms_mm < 8.0
    assert result.world.board_tilt_deg < 1.0 and abs(result.world.board_height_m - 0.001) < 0.005


def test_two_cameras_and_an_upright_board_through_the_cli(
    easel: dict[str, object], easel_calibration: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    out, done = easel_calibration
    print("\n" + done.stdout)
    # The camera behind the board is reported by serial with the reason, not guessed; status 1.
    assert done.returncode == 1, done.stderr
    assert "camera back was not calibrated: no board in its colour image" in done.stdout
    calibration = load_calibration(str(out))
    assert sorted(calibration.cameras) == ["left", "right"]
    assert calibration.world["floor_found"] and 70 < calibration.world["board_tilt_deg"] < 90
    cams = easel["cams"]
    assert isinstance(cams, dict)
    for serial, got in calibration.cameras.items():
        rot = rotation_error_deg(got.world_from_camera, cams[serial].world_from_camera)
        pos = translation_error_m(got.world_from_camera, cams[serial].world_from_camera)
        print(f"{serial}: rotation error {rot:.3f}°, position error {pos * 1000:.2f} mm")
        assert rot <= MAX_ROT_DEG and pos <= MAX_POS_M
    assert calibration.board == A3 or calibration.board.to_dict() == A3.to_dict()


def test_icp_converges_from_3cm_3deg_off(flat_rig: dict[str, object]) -> None:
    cams, frames, board = flat_rig["cams"], flat_rig["frames"], flat_rig["world_from_board"]
    assert isinstance(cams, list) and isinstance(frames, list) and isinstance(board, np.ndarray)
    truth = [np.linalg.inv(board) @ c.world_from_camera for c in cams]  # board_from_camera
    start = [truth[0]] + [perturb(t, shift_m=0.03, angle_deg=3.0, seed=i) for i, t in enumerate(truth[1:])]
    clouds = [camera_cloud(f) for f in frames]
    results = refine_poses([c.serial for c in cams], clouds, start)
    print()
    for t, s, r, cloud in zip(truth[1:], start[1:], results[1:], clouds[1:]):
        pts = np.asarray(cloud.points)
        # How far the camera's points lie from where they belong: before and after.
        before = np.linalg.norm(pts @ (s - t)[:3, :3].T + (s - t)[:3, 3], axis=1)
        after = np.linalg.norm(
            pts @ (r.common_from_camera - t)[:3, :3].T + (r.common_from_camera - t)[:3, 3], axis=1
        )
        pos = translation_error_m(r.common_from_camera, t)
        rot = rotation_error_deg(r.common_from_camera, t)
        print(
            f"{r.serial}: start {translation_error_m(s, t) * 1000:.0f} mm / {rotation_error_deg(s, t):.1f}° "
            f"(points off by {np.mean(before) * 1000:.0f} mm on average) -> {pos * 1000:.2f} mm / {rot:.3f}° "
            f"(points {np.mean(after) * 1000:.2f} mm, max {np.max(after) * 1000:.2f}), residual {r.rms_mm:.1f} mm, {r.method}"
        )
        assert r.method in ("point-to-plane", "coloured")
        assert pos <= MAX_POS_M and np.mean(after) <= MAX_POS_M and rot <= MAX_ROT_DEG


def test_a_flat_overlap_is_not_refined_and_says_so() -> None:
    """Two cameras seeing only the floor and the board: ICP could slide them; it is not applied."""
    cams = [
        ring_camera(f"cam{i}", az, radius_m=1.4, height_m=1.4, target=(0.18, 0.0, 0.13))
        for i, az in enumerate((0, 120))
    ]
    scene = Scene(A3, board_on_floor((0.0, 0.0)))
    result = calibrate_rig([scene.render(c, seed=5 + i) for i, c in enumerate(cams)], A3)
    assert result.icp[1].method == "board" and "too flat" in result.icp[1].note
    assert any("cam1: ICP was not applied" in w and "rests on the board alone" in w for w in result.warnings)
    for cam in cams:
        got = result.calibration.cameras[cam.serial].world_from_camera
        assert rotation_error_deg(got, cam.world_from_camera) <= MAX_ROT_DEG
        assert translation_error_m(got, cam.world_from_camera) <= MAX_POS_M


def test_one_camera_is_placed_on_the_floor_by_the_board(flat_rig: dict[str, object]) -> None:
    cams, frames = flat_rig["cams"], flat_rig["frames"]
    assert isinstance(cams, list) and isinstance(frames, list)
    result = calibrate_rig(frames[:1], A3)
    got = result.calibration.cameras["cam0"]
    assert got.icp_rms_mm is None and result.calibration.reference == "cam0"
    assert rotation_error_deg(got.world_from_camera, cams[0].world_from_camera) <= MAX_ROT_DEG
    assert translation_error_m(got.world_from_camera, cams[0].world_from_camera) <= MAX_POS_M


def test_without_a_floor_the_board_must_lie_level() -> None:
    from calibration.floor import world_from_board

    # Cameras looking down at a level board (their "up" is the board's face normal, -z).
    level = world_from_board(None, np.array([0.0, 0.1, -1.0]), board_height_m=0.75)
    assert level.floor is None and any("0.75 m above the floor" in w for w in level.warnings)
    corner = level.world_from_board @ np.array([0.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(corner[:3], [0.0, 0.75, 0.0], atol=1e-12)  # the stated offset
    np.testing.assert_allclose(level.world_from_board[:3, :3] @ [0.0, 0.0, -1.0], [0.0, 1.0, 0.0], atol=1e-12)
    with pytest.raises(CalibrationError, match="no floor is in view and the board is not lying level"):
        world_from_board(None, np.array([0.0, -1.0, 0.0]))  # an upright board, no floor: up is unknown


# -- the floor on a real frame ----------------------------------------------------------------------


def test_five_people_stand_on_the_floor_upright(five_people: Path) -> None:
    """No calibration: the floor (RANSAC) alone stands the people on y = 0, upright.

    Per person (connected piece of the capture mask): the feet's contact height is the 2nd
    percentile height of all depth points within 5 cm (horizontally) of the person's lowest 15 cm
    — the capture itself drops the last few centimetres above the floor as floor — and "upright"
    is the angle between the person's principal axis and +y.
    """
    from scipy.spatial import cKDTree

    from holo.capture import CapturePipeline
    from holo.geometry import backproject, transform_points
    from holo.sources import SourceOptions, open_source

    with open_source(f"rgbd:{five_people}", SourceOptions(intrinsics=(525.0, 525.0, 319.5, 239.5))) as src:
        frame = next(iter(src))
    pipeline = CapturePipeline()
    cloud = pipeline.process(frame)
    floor = pipeline.segmenter.floor  # type: ignore[attr-defined]
    assert floor is not None and cloud.world_from_camera is not None and cloud.pixels is not None
    world = cloud.in_world().points_m.astype(np.float64)
    raw, _, _ = backproject(frame.depth_m, frame.intrinsics, frame.depth_m > 0)
    raw_world = transform_points(cloud.world_from_camera, raw).astype(np.float64)
    h, w = frame.shape
    mask = np.zeros((h, w), np.uint8)
    mask[cloud.pixels[:, 1], cloud.pixels[:, 0]] = 1
    _, labels = cv2.connectedComponents(mask, connectivity=8)
    piece = labels[cloud.pixels[:, 1], cloud.pixels[:, 0]]
    print(f"\nfloor: {floor.inlier_fraction:.0%} of the frame, RMS {floor.rms_m * 1000:.1f} mm")
    feet_seen = 0
    for label in np.unique(piece):
        pts = world[piece == label]
        if len(pts) < 3000:
            continue
        cov = np.cov((pts - pts.mean(axis=0)).T)
        axis = np.linalg.eigh(cov)[1][:, -1]
        tilt_deg = math.degrees(math.acos(abs(axis[1])))
        lowest = float(pts[:, 1].min())
        head = float(np.percentile(pts[:, 1], 99.5))
        bottom = pts[pts[:, 1] < lowest + 0.15]
        d, _ = cKDTree(bottom[:, [0, 2]]).query(raw_world[:, [0, 2]], distance_upper_bound=0.05)
        column = raw_world[np.isfinite(d) & (raw_world[:, 1] < lowest + 0.15), 1]
        rows = cloud.pixels[piece == label, 1]
        cut = lowest > 0.15 and rows.max() >= h - 10
        feet = float(np.percentile(column, 2))
        print(
            f"person at x {pts[:, 0].mean():+.2f} m, {-pts[:, 2].mean():.2f} m ahead: "
            + ("feet out of the camera's view" if cut else f"feet at y = {feet * 100:+.1f} cm")
            + f" (lowest cloud point {lowest * 100:.1f} cm), head {head:.2f} m, axis {tilt_deg:.1f}° from vertical"
        )
        assert tilt_deg < 8.0
        assert 1.5 < head < 2.0
        if not cut:
            feet_seen += 1
            assert -0.05 <= feet <= 0.05
            assert lowest < 0.1
    assert feet_seen >= 3


# -- the file ---------------------------------------------------------------------------------------


def small_calibration() -> CalibrationFile:
    m = np.eye(4)
    m[:3, :3] = cv2.Rodrigues(np.array([0.1, -0.4, 0.05]))[0]
    m[:3, 3] = (0.5, 1.4, 2.0)
    k = Intrinsics(width=640, height=480, fx=525.0, fy=525.0, cx=319.5, cy=239.5)
    cams = {
        "A": CameraCalibration("A", k, np.eye(4), 0.21, None, "2026-01-01T00:00:00+00:00"),
        "B": CameraCalibration("B", k, m, 0.33, 3.8, "2026-01-01T00:00:00+00:00", {"icp": "coloured"}),
    }
    return CalibrationFile(board=A3, cameras=cams, created="2026-01-01T00:00:00+00:00", reference="A")


def test_calibration_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    original = small_calibration()
    save_calibration(original, str(path))
    loaded = load_calibration(str(path))
    data = json.loads(path.read_text())
    assert data["format"] == "holo-calibration" and data["version"] == 1
    assert loaded.board.to_dict() == A3.to_dict() and loaded.reference == "A"
    for serial, cam in original.cameras.items():
        got = loaded.cameras[serial]
        np.testing.assert_allclose(got.world_from_camera, cam.world_from_camera, atol=1e-12)
        assert got.intrinsics == cam.intrinsics
        assert (got.reprojection_error_px, got.icp_rms_mm, got.date) == (
            cam.reprojection_error_px,
            cam.icp_rms_mm,
            cam.date,
        )
    assert loaded.cameras["B"].extra == {"icp": "coloured"}
    # Never overwritten without force; with force, replaced whole; no temporary files left behind.
    before = path.read_bytes()
    with pytest.raises(CalibrationError, match="already exists; pass --force"):
        save_calibration(original, str(path))
    assert path.read_bytes() == before
    save_calibration(loaded, str(path), force=True)
    assert load_calibration(str(path)).cameras.keys() == original.cameras.keys()
    assert sorted(os.listdir(tmp_path)) == ["calibration.json"]


def _write_json(path: Path, data: object) -> str:
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d.update(version=2),
            "is format version 2, written by a newer Holo; this Holo reads version 1",
        ),
        (lambda d: d.update(format="something"), "is not a Holo calibration file"),
        (lambda d: d.update(version="1"), "invalid version '1'"),
        (
            lambda d: d["cameras"]["B"].update(world_from_camera=[[1, 0, 0], [0, 1, 0]]),
            "must be a 4x4 matrix",
        ),
        (
            lambda d: d["cameras"]["B"]["world_from_camera"][0].__setitem__(0, float("nan")),
            "holds a non-finite number",
        ),
        (
            lambda d: d["cameras"]["B"]["world_from_camera"][0].__setitem__(0, 2.0),
            "is not a rigid transform",
        ),
        (
            lambda d: d["cameras"]["B"]["world_from_camera"][3].__setitem__(3, 2.0),
            "must end with the row 0 0 0 1",
        ),
        (lambda d: d["cameras"]["B"]["intrinsics"].pop("fx"), "camera B: intrinsics need width"),
        (lambda d: d["cameras"]["B"].update(icp_rms_mm=-1), "icp_rms_mm must be a non-negative number"),
        (lambda d: d["cameras"]["B"].update(date="yesterday"), "is not an ISO 8601 date"),
        (lambda d: d.update(cameras={}), "lists no cameras"),
        (lambda d: d["board"].update(squares_x=1), "a board needs 2 to 30 squares"),
        (lambda d: d.update(reference="Z"), "names reference camera 'Z'"),
    ],
)
def test_bad_calibration_files_are_refused(tmp_path: Path, change: object, message: str) -> None:
    data = small_calibration().to_dict()
    assert callable(change)
    change(data)
    path = _write_json(tmp_path / "bad.json", data)
    with pytest.raises(CalibrationError) as info:
        load_calibration(path)
    assert message in str(info.value) and path in str(info.value)


def test_corrupt_calibration_file_names_file_and_position(tmp_path: Path) -> None:
    good = json.dumps(small_calibration().to_dict(), indent=2)
    path = tmp_path / "calibration.json"
    path.write_text(good[: len(good) // 2])
    with pytest.raises(CalibrationError, match=r"calibration\.json is not valid JSON \(line \d+, column \d+"):
        load_calibration(str(path))
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CalibrationError, match="is not UTF-8 text"):
        load_calibration(str(path))
    with pytest.raises(CalibrationError, match="does not exist"):
        load_calibration(str(tmp_path / "missing.json"))


# -- bad input to the commands -------------------------------------------------------------------


def test_no_board_found_writes_nothing(easel: dict[str, object], tmp_path: Path) -> None:
    root = easel["root"]
    assert isinstance(root, Path)
    out = tmp_path / "calibration.json"
    done = calibrate_cli(
        "cameras", f"--source=rgbd:{root / 'person' / 'left'}", f"--source=rgbd:{root / 'person' / 'right'}",
        "--board", "A3", "--frames", "1", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 2
    assert (
        "no camera saw the board" in done.stderr
        and "camera left: no board in its colour image" in done.stderr
    )
    assert not out.exists()


def test_board_seen_by_one_camera_only_overwrites_nothing(easel: dict[str, object], tmp_path: Path) -> None:
    root = easel["root"]
    assert isinstance(root, Path)
    out = tmp_path / "calibration.json"
    out.write_text("keep me")
    done = calibrate_cli(
        "cameras", f"--source=rgbd:{root / 'board' / 'left'}", f"--source=rgbd:{root / 'person' / 'right'}",
        "--board", "A3", "--frames", "1", "--out", str(out), "--force",
    )  # fmt: skip
    assert done.returncode == 2
    assert "the board was seen by only one camera (left)" in done.stderr
    assert "camera right: no board in its colour image" in done.stderr
    assert out.read_text() == "keep me"
    refused = calibrate_cli("cameras", f"--source=rgbd:{root / 'board' / 'left'}", "--out", str(out))
    assert refused.returncode == 2 and "already exists; pass --force" in refused.stderr
    assert out.read_text() == "keep me"


def test_capture_refuses_unknown_serial_and_bad_files(
    easel_calibration: tuple[Path, subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    path, _ = easel_calibration
    code, _, err = holo_capture("--source", "synthetic", "--count", "1", "--calibration", str(path))
    assert code == 2
    assert "camera 'synthetic-0' is not in the calibration; it knows left, right" in err
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"format": "holo-calibration", "version": 1, "cameras": {')
    code, _, err = holo_capture("--source", "synthetic", "--count", "1", "--calibration", str(corrupt))
    assert code == 2 and f"calibration file {corrupt} is not valid JSON (line 1" in err
    future = tmp_path / "future.json"
    future.write_text(json.dumps({**json.loads(path.read_text()), "version": 7}))
    code, _, err = holo_capture("--source", "synthetic", "--count", "1", "--calibration", str(future))
    assert code == 2 and "is format version 7, written by a newer Holo" in err


# -- fusion ------------------------------------------------------------------------------------------


def test_voxel_merge_averages_duplicates() -> None:
    pts = np.array([[0.0011, 0.0, 0.0], [0.0039, 0.0, 0.0], [0.0061, 0.0, 0.0]], np.float32)
    cols = np.array([[0, 0, 0], [100, 200, 50], [255, 255, 255]], np.uint8)
    p, c = voxel_merge(pts, cols, 0.005)
    order = np.argsort(p[:, 0])
    np.testing.assert_allclose(p[order, 0], [0.0025, 0.0061], atol=1e-6)
    np.testing.assert_array_equal(c[order], [[50, 100, 25], [255, 255, 255]])
    cloud = PersonCloud(points_m=pts, colors=cols, capture_time_ns=1, sequence=0, frame="camera")
    with pytest.raises(CalibrationError, match="not placed in the world"):
        fuse_clouds([cloud])


def _truth_surface(easel: dict[str, object]) -> np.ndarray:
    from holo.geometry import backproject

    scene, cams = easel["person_scene"], easel["cams"]
    assert isinstance(scene, Scene) and isinstance(cams, dict)
    surface = []
    for serial in ("left", "right"):
        frame = scene.render(cams[serial], noise=False)
        pc = backproject(frame.depth_m, frame.intrinsics, frame.depth_m > 0)[0].astype(np.float64)
        m = cams[serial].world_from_camera
        pw = pc @ m[:3, :3].T + m[:3, 3]
        surface.append(pw[pw[:, 1] > 0.004])  # the body, not the floor
    return np.concatenate(surface)


def test_capture_fuses_calibrated_cameras_into_one_world_cloud(
    easel: dict[str, object],
    easel_calibration: tuple[Path, subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    from scipy.spatial import cKDTree

    from holo.ply import read_ply

    path, _ = easel_calibration
    root = easel["root"]
    assert isinstance(root, Path)
    out = tmp_path / "fused"
    code, stdout, err = holo_capture(
        *(f"--source=rgbd:{root / 'person' / s}" for s in ("left", "right")),
        "--calibration", str(path), "--out", str(out), "--frame", "world", "--count", "2", "--body", "off",
    )  # fmt: skip
    assert code == 0, err
    assert "fused into one world-frame cloud (5 mm voxels)" in stdout
    assert sorted(p for p in os.listdir(out) if p.endswith(".ply")) == [
        "frame_000000.ply",
        "frame_000001.ply",
    ]
    assert not (out / "cam0").exists()
    truth = cKDTree(_truth_surface(easel))
    single = 0
    lines = []  # printed with the fused cloud's numbers, at the end
    for serial in ("left", "right"):
        solo = tmp_path / serial
        code, _, err = holo_capture(
            f"--source=rgbd:{root / 'person' / serial}", "--calibration", str(path),
            "--out", str(solo), "--frame", "world", "--count", "1", "--body", "off",
        )  # fmt: skip
        assert code == 0, err
        cloud = read_ply(str(solo / "frame_000000.ply"))
        single += len(cloud)
        d, _ = truth.query(cloud.points_m.astype(np.float64))
        lines.append(
            f"{serial} alone, placed by the file: {len(cloud)} points, median {np.median(d) * 1000:.1f} mm from the true body"
        )
        assert np.median(d) < 0.006
    fused = read_ply(str(out / "frame_000000.ply"))
    pts = fused.points_m.astype(np.float64)
    d, _ = truth.query(pts)
    keys = np.unique(np.floor(pts / 0.005).astype(np.int64), axis=0)
    print("\n" + "\n".join(lines))
    print(
        f"fused: {len(fused)} points from {single} (duplicates merged at 5 mm), median {np.median(d) * 1000:.1f} mm "
        f"and 95th percentile {np.percentile(d, 95) * 1000:.1f} mm from the true body; "
        f"feet at {pts[:, 1].min() * 100:.1f} cm, head at {pts[:, 1].max():.2f} m"
    )
    assert fused.frame == "world"
    assert len(fused) < single and len(keys) >= 0.98 * len(fused)
    assert np.median(d) < 0.006 and np.percentile(d, 95) < 0.02
    assert -0.01 < pts[:, 1].min() < 0.08 and 1.65 < pts[:, 1].max() < 1.8
