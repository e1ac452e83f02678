"""`holo demo --headless --frames N`: the whole system as a user first meets it, as real processes —
a signaling server, two calls over WebRTC on loopback, a recorder and the offscreen viewer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from holo.codec import StreamDecoder
from tests.conftest import REPO

FRAMES = 45


def person_blob(image: np.ndarray) -> tuple[int, int, int]:
    """The largest blob of coloured (not grey: not background, grid or text) pixels: (area, height,
    width) in pixels."""
    rgb = image[..., :3].astype(int)
    chroma = rgb.max(axis=2) - rgb.min(axis=2)
    labels, n = ndimage.label(ndimage.binary_closing(chroma > 40, iterations=2))
    if n == 0:
        return 0, 0, 0
    sizes = ndimage.sum(np.ones_like(labels), labels, index=range(1, n + 1))
    biggest = int(np.argmax(sizes)) + 1
    rows, cols = np.nonzero(labels == biggest)
    return int(sizes[biggest - 1]), int(rows.ptp() + 1), int(cols.ptp() + 1)


@pytest.mark.timeout(300)
def test_headless_demo_calls_shows_a_person_and_records_a_replayable_session(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "holo.cli",
            "demo",
            "--headless",
            "--frames",
            str(FRAMES),
            "--out",
            str(out),
            "--no-webcam",
            "--size",
            "640x360",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in (out / "logs").glob("*.log")
    )
    assert run.returncode == 0, run.stdout + run.stderr + logs
    # Frames crossed the call: the viewer on alice's side showed FRAMES frames of bob.
    assert f"{FRAMES} frames of bob shown" in run.stdout, run.stdout
    # The snapshot shows a person: a coloured, upright, sizeable figure.
    image = np.asarray(Image.open(out / "snapshots" / "latest.png"))
    area, height, width = person_blob(image)
    print(
        f"\nperson in the demo snapshot: {area} px, {height} x {width} px (image {image.shape[1]}x{image.shape[0]})"
    )
    assert area > 0.01 * image.shape[0] * image.shape[1]
    assert height > 1.3 * width  # standing, not lying or smeared
    assert height > 0.25 * image.shape[0]
    # The session was recorded and replays: `holo info` reads it, and `holo play` puts bob's real,
    # decodable packets back on a bus.
    recording = out / "session.mcap"
    assert recording.exists(), run.stdout
    from holo.record.reader import summarize

    summary = summarize(str(recording))
    names = {p.name: p for p in summary.participants}
    assert {"alice", "bob"} <= set(names), names
    assert names["bob"].frames >= 10 and names["alice"].frames >= 10
    info = subprocess.run(
        [sys.executable, "-m", "holo.cli", "info", str(recording)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert info.returncode == 0 and "bob" in info.stdout, info.stdout + info.stderr
    from tests.callkit import BusTap, HoloProcess, wait_until
    from tests.conftest import free_port_pair

    bus = f"tcp://127.0.0.1:{free_port_pair()}"
    tap = BusTap(bus, ["holo/bob/cloud"])
    player = HoloProcess(["play", str(recording), "--bus", bus], tmp_path / "play.log")
    try:
        wait_until(lambda: player.proc.poll() is not None, 120, "the replay to finish")
    finally:
        player.stop()
        tap.close()
    replayed = tap.topic("holo/bob/cloud")
    assert player.proc.returncode == 0, player.text()
    assert len(replayed) >= 0.9 * names["bob"].frames, (len(replayed), names["bob"].frames)
    decoder = StreamDecoder()
    clouds = [decoder.decode(p) for p, _ in replayed[-5:]]
    assert all(c.participant == "bob" and len(c.points_m) > 1000 for c in clouds)
