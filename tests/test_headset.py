"""``holo view --headset`` (OpenXR): against Monado with a scripted head, and with no runtime at all.

The Monado test runs the real command under ``monado-run.sh --hmd remote --compositor null``, moves
the remote headset (straight ahead, a step to the left, a 30° turn to the left) and checks the eye
images the viewer captured against the poses it recorded: the person is there in both eyes, the
eyes see them with a small stereo disparity, and the image moves the way the head did.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.conftest import FIVE_PEOPLE, REPO, run_holo
from tests.monado_kit import MonadoRun, monado_lock, monado_missing, person_mask, stream_pose

EYE_HEIGHT_Y = 1.6  # the remote driver's y for a standing eye height (LOCAL then reports y = 0)
FRAMES = 160  # at Monado's null compositor's 20 Hz: 8 s of frames (the moves take about 4)
PHASE_S = 1.2  # how long the head holds each scripted pose


@pytest.fixture(scope="module")
def person_ply(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real person (the main one of the Kinect five-people frame), or the synthetic performer."""
    out = tmp_path_factory.mktemp("person")
    pcd = FIVE_PEOPLE / "five_people.pcd"
    source = ["--source", f"pcd:{pcd}", "--people", "main"] if pcd.exists() else []
    done = run_holo("capture", *source, "--count", "1", "--out", str(out), "--frame", "world", timeout=90)
    assert done.returncode == 0, done.stderr
    plys = sorted(out.rglob("*.ply"))
    assert plys, f"holo capture wrote no PLY: {done.stdout}{done.stderr}"
    return plys[0]


@pytest.mark.parametrize("runtime", ["missing-file", "none-installed"])
def test_headset_without_a_runtime_says_so_and_suggests_sbs(
    person_ply: Path, tmp_path: Path, runtime: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("XR_RUNTIME_JSON", "XR_LOADER_DEBUG")}
    # No user or system runtime either: the loader's search paths point at empty folders.
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["XDG_CONFIG_DIRS"] = str(tmp_path / "xdg")
    if runtime == "missing-file":
        env["XR_RUNTIME_JSON"] = str(tmp_path / "no-such-runtime.json")
    elif any(Path(d, "openxr/1/active_runtime.json").exists() for d in ("/etc", "/etc/xdg")):
        pytest.skip("this machine has an OpenXR runtime installed system-wide")
    done = subprocess.run(
        [sys.executable, "-m", "holo.cli", "view", "--headset", "--input", str(person_ply)],
        capture_output=True, text=True, timeout=60, cwd=REPO, env=env,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no OpenXR runtime" in done.stderr
    assert "--headset sbs" in done.stderr
    assert "Traceback" not in done.stderr
    if runtime == "missing-file":
        assert "no-such-runtime.json" in done.stderr  # says which file was missing
    assert "OpenXR-Loader" not in done.stderr  # the loader's own chatter is not shown


def _yaw_deg(orientation: list[float]) -> float:
    x, y, z, w = orientation
    return math.degrees(math.atan2(2 * (w * y + x * z), 1 - 2 * (x * x + y * y)))


def _pose_group(record: dict[str, Any]) -> str | None:
    """Which scripted pose a frame was rendered at, from the views it recorded (what was drawn)."""
    views = record["views"]
    x = (views[0]["position"][0] + views[1]["position"][0]) / 2
    yaw = _yaw_deg(views[0]["orientation"])
    if abs(yaw) < 1.0 and abs(x) < 0.01:
        return "ahead"
    if abs(yaw) < 1.0 and abs(x + 0.3) < 0.01:
        return "left"
    if abs(yaw - 30.0) < 1.0 and abs(x) < 0.01:
        return "turned"
    return None


def _px_per_tangent(record: dict[str, Any], width: int) -> float:
    left, right = record["views"][0]["fov"][:2]
    return width / (math.tan(right) - math.tan(left))


@pytest.mark.monado
@pytest.mark.timeout(150)
def test_headset_renders_the_person_and_follows_the_scripted_head(person_ply: Path, tmp_path: Path) -> None:
    reason = monado_missing()
    if reason:
        pytest.skip(reason)
    capture = tmp_path / "capture"
    frames_log = capture / "frames.jsonl"
    command = [
        sys.executable, "-m", "holo.cli", "-v", "view", "--headset", "--input", str(person_ply),
        "--headset-frames", str(FRAMES), "--headset-capture", str(capture),
    ]  # fmt: skip
    started = time.monotonic()
    with monado_lock(), MonadoRun(command, tmp_path / "monado.log") as run:
        deadline = time.monotonic() + 45
        while run.running() and time.monotonic() < deadline and not frames_log.exists():
            time.sleep(0.1)
        assert frames_log.exists(), f"no frame was rendered within 45 s:\n{run.output()}"
        stream_pose(0.0, EYE_HEIGHT_Y, 0.0, 0.0, PHASE_S)  # standing, looking straight ahead
        stream_pose(-0.3, EYE_HEIGHT_Y, 0.0, 0.0, PHASE_S)  # a step to the left
        stream_pose(0.0, EYE_HEIGHT_Y, 0.0, 30.0, PHASE_S)  # back, head turned 30° to the left
        assert run.running(), f"the viewer stopped before the head had made its moves:\n{run.output()}"
        status = run.wait(60)
        output = run.output()
    assert status == 0, output
    assert "OpenXR session state: FOCUSED" in output
    assert "Traceback" not in output
    assert f"showed {FRAMES} frames" in output
    print(f"Monado run: {time.monotonic() - started:.1f} s; {output.splitlines()[-1]}")

    records = [json.loads(line) for line in frames_log.read_text().splitlines()]
    assert len(records) == FRAMES
    assert {r["state"] for r in records} <= {"VISIBLE", "FOCUSED"}
    assert records[0]["eye_height_m"] == pytest.approx(
        1.6, abs=0.01
    )  # Monado's STAGE: floor 1.6 m below LOCAL

    groups: dict[str, list[dict[str, Any]]] = {"ahead": [], "left": [], "turned": []}
    for r in records:
        assert len(r["images"]) == 2 and r["head"]["valid"]
        group = _pose_group(r)
        if group is not None:
            groups[group].append(r)
    assert all(len(g) >= 3 for g in groups.values()), {k: len(g) for k, g in groups.items()}

    def centroids(group: list[dict[str, Any]]) -> tuple[np.ndarray, dict[str, Any]]:
        """Median over the group's frames of each eye's person centroid (x, y) in pixels."""
        per_frame = []
        for r in group:
            eyes = []
            for name in r["images"]:
                image = np.asarray(Image.open(capture / name).convert("RGB"))
                mask = person_mask(image)
                assert mask.sum() > 0.01 * mask.size, f"{name}: only {mask.sum()} person pixels"
                ys, xs = np.nonzero(mask)
                eyes.append((xs.mean(), ys.min(), ys.max()))
            per_frame.append(eyes)
        info = {"height": image.shape[0], "width": image.shape[1]}
        return np.median(np.array(per_frame), axis=0), info

    ahead, info = centroids(groups["ahead"])
    left, _ = centroids(groups["left"])
    turned, _ = centroids(groups["turned"])
    scale = _px_per_tangent(groups["ahead"][0], info["width"])  # pixels per unit of tan(angle)
    ipd = groups["ahead"][0]["views"][1]["position"][0] - groups["ahead"][0]["views"][0]["position"][0]
    distance = 2.0  # the first seat is 2 m in front of the viewer

    # Stereo: the left eye (at -x) sees the person further right than the right eye does.
    disparity = ahead[0][0] - ahead[1][0]
    expected = ipd / distance * scale
    assert 0.5 * expected < disparity < 2.0 * expected, (disparity, expected)

    # A step to the left moves the person to the right in both eyes.
    step = (left[:, 0] - ahead[:, 0]).mean()
    expected = 0.3 / distance * scale
    assert 0.6 * expected < step < 1.6 * expected, (step, expected)

    # A turn to the left (+30° about +y) moves the person to the right by about tan(30°).
    turn = (turned[:, 0] - ahead[:, 0]).mean()
    expected = math.tan(math.radians(30)) * scale
    assert 0.75 * expected < turn < 1.25 * expected, (turn, expected)

    print(
        f"disparity {disparity:.1f} px, step {step:.1f} px, turn {turn:.1f} px, groups "
        f"{ {k: len(g) for k, g in groups.items()} }, person rows {ahead[0][1]:.0f}..{ahead[0][2]:.0f}"
    )
    # A natural height: standing eyes 1.6 m above the floor look at the person's head, not their feet.
    up, down = groups["ahead"][0]["views"][0]["fov"][2:]
    horizon = info["height"] * math.tan(up) / (math.tan(up) - math.tan(down))
    top, bottom = ahead[0][1], ahead[0][2]
    assert top < horizon < bottom, (top, horizon, bottom)
    assert bottom - horizon > 2 * (horizon - top), (
        top,
        horizon,
        bottom,
    )  # most of the body is below eye level
