"""``holo view``: remote participants in 3D — a desktop window, offscreen snapshots, or a headset.

Sources: the local bus (every ``holo/<participant>/cloud``; the default) or ``--input FILE`` (PLY
files, repeatable). Modes: a window (default; needs a display), ``--snapshot FILE.png`` (EGL, no
display needed), ``--headset`` (OpenXR) or ``--headset sbs`` (a side-by-side stereo window whose
head pose comes from the ``holo/headpose`` topic).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

import numpy as np

from holo.errors import ConfigError, ViewerError
from viewer.camera import OrbitCamera, default_camera
from viewer.scene import BusFeed, Scene

__all__ = ["add_view_arguments", "fit_camera", "run_view", "stats_lines"]

logger = logging.getLogger(__name__)


def add_view_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bus",
        default=None,
        metavar="ADDR",
        help="local bus to show (default $HOLO_BUS or tcp://127.0.0.1:7755)",
    )
    p.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="FILE",
        help="show a file instead of the bus: a PLY point cloud (repeat for several people)",
    )
    p.add_argument(
        "--snapshot",
        metavar="FILE.png",
        help="render offscreen (EGL, no display needed) and write the image; with --frames N > 1 a "
        "'{frame}' in the name writes every frame",
    )
    p.add_argument(
        "--size", default="1280x720", metavar="WxH", help="image or window size in pixels (default 1280x720)"
    )
    p.add_argument("--frames", type=int, default=1, metavar="N", help="snapshot: render N frames (default 1)")
    p.add_argument(
        "--wait",
        type=float,
        default=10.0,
        metavar="S",
        help="snapshot from the bus: wait up to S seconds for a participant (default 10)",
    )
    p.add_argument(
        "--headset",
        nargs="?",
        const="openxr",
        choices=("openxr", "sbs"),
        default=None,
        help="render for a headset: through OpenXR (default), or 'sbs', a side-by-side stereo window "
        "whose head pose comes from the bus topic holo/headpose",
    )
    p.add_argument(
        "--headset-frames",
        type=int,
        default=None,
        metavar="N",
        help="headset: stop after N frames (default: until the session ends or Ctrl-C)",
    )
    p.add_argument(
        "--headset-capture",
        metavar="DIR",
        help="headset: also write each eye's image and the head pose per frame to DIR (for checks)",
    )
    p.add_argument(
        "--ipd-mm", type=float, default=64.0, help="sbs stereo: distance between the eyes in mm (default 64)"
    )
    p.add_argument(
        "--self-view", action="store_true", help="also show yourself (your own participant on the bus)"
    )
    p.add_argument(
        "--participant",
        default=None,
        metavar="NAME",
        help="who you are (hidden unless --self-view; default $USER)",
    )
    p.add_argument(
        "--no-stats", action="store_true", help="hide the stats overlay (key S toggles it in the window)"
    )
    p.add_argument(
        "--no-skeleton", action="store_true", help="hide skeletons (key K toggles them in the window)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=2.0,
        metavar="S",
        help="a participant whose frames stop fades out after S seconds (default 2) and leaves 1.5 s later",
    )


def fit_camera(scene: Scene, aspect: float) -> OrbitCamera:
    """A view of everyone present: facing their seats' middle, far enough for all to fit."""
    visible = scene.snapshot()
    if not visible:
        return default_camera()
    corners = []
    for p, _ in visible:
        points = p.points
        if len(points) == 0:
            continue
        m = p.model_matrix()
        lo = np.percentile(points, 1, axis=0)
        hi = np.percentile(points, 99, axis=0)
        box = np.array(
            [[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
        )
        corners.append((box @ m.T)[:, :3])
    if not corners:
        return OrbitCamera()
    pts = np.vstack(corners)
    centre = (pts.min(axis=0) + pts.max(axis=0)) / 2
    half_w = (pts[:, 0].max() - pts[:, 0].min()) / 2 + 0.3
    half_h = (pts[:, 1].max() - pts[:, 1].min()) / 2 + 0.2
    fovy = np.radians(50.0)
    need = max(half_h / np.tan(fovy / 2), half_w / (np.tan(fovy / 2) * aspect))
    distance = float(np.clip(need + (pts[:, 2].max() - centre[2]), 1.5, 20.0))
    return OrbitCamera(
        target=np.array([centre[0], centre[1], centre[2]]), distance_m=distance, pitch_rad=-0.05
    )


def stats_lines(scene: Scene, feed: BusFeed | None) -> list[str]:
    lines = []
    now = time.monotonic()
    for p, alpha in scene.snapshot(now):
        s = p.stats
        if feed is None:  # a file: nothing is streaming
            lines.append(f"{p.name}: {len(p.colors):,} points")
            continue
        parts = [f"{p.name}: {p.fps:4.1f} fps"]
        if s.get("latency_p50_ms") is not None:
            parts.append(f"latency {s['latency_p50_ms']:.0f}/{s.get('latency_p95_ms') or 0:.0f} ms")
        if s.get("bitrate_in_mbps") is not None:
            parts.append(f"{s['bitrate_in_mbps']:.1f} Mbit/s")
        drops = sum(
            int(s.get(k, 0) or 0) for k in ("total_frames_dropped_link", "total_frames_dropped_decode")
        )
        parts.append(f"{drops} dropped")
        if alpha < 1:
            parts.append("(gone?)")
        lines.append("  ".join(parts))
    if feed is not None and feed.refused:
        lines.append(f"{feed.refused} corrupt packets skipped")
    return lines or ["waiting for participants..."]


def _size(text: str) -> tuple[int, int]:
    from holo.cli import parse_size

    return parse_size(text)


def load_inputs(scene: Scene, files: list[str]) -> None:
    from holo.ply import read_ply

    for i, path in enumerate(files):
        if not path.lower().endswith(".ply"):
            raise ConfigError(f"--input {path}: only PLY files can be shown (recordings come with holo play)")
        cloud = read_ply(path)
        name = cloud.participant if cloud.participant not in scene.names() else f"{cloud.participant}-{i}"
        scene.update(cloud.with_(participant=name))


def run_view(args: argparse.Namespace) -> int:
    from holo.cli import default_participant

    if args.frames < 1:
        raise ConfigError("--frames must be at least 1")
    width, height = _size(args.size)
    me = args.participant or default_participant()
    # Your own stream is hidden on the bus unless asked for; files are always shown.
    scene = Scene(timeout_s=args.timeout, hide=set() if args.self_view or args.input else {me})
    feed = None
    if args.input:
        scene.timeout_s = float("inf")  # files never go silent
        load_inputs(scene, args.input)
    else:
        feed = BusFeed(scene, args.bus)
    try:
        if args.snapshot:
            return _snapshot(args, scene, feed, width, height)
        if args.headset == "openxr":
            from viewer.headset import run_openxr

            return run_openxr(scene, args)
        from viewer.window import run_window

        return run_window(scene, feed, width, height, args)
    finally:
        if feed is not None:
            feed.close()


def _snapshot(args: argparse.Namespace, scene: Scene, feed: BusFeed | None, width: int, height: int) -> int:
    from viewer.offscreen import Offscreen

    if feed is not None:
        deadline = time.monotonic() + args.wait
        while not scene.names() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not scene.names():
            raise ViewerError(
                f"no participant appeared on the bus within {args.wait:g} s (is a call or capture publishing?)"
            )
    off = Offscreen(width, height)
    try:
        camera = fit_camera(scene, width / height)
        period = 1 / 30
        written = []
        for n in range(args.frames):
            t0 = time.monotonic()
            image = off.render(
                scene,
                camera,
                stats_lines=None if args.no_stats else stats_lines(scene, feed),
                stereo_ipd_m=args.ipd_mm / 1000 if args.headset == "sbs" else 0.0,
            )
            last = n == args.frames - 1
            if "{frame" in args.snapshot or last:
                path = args.snapshot.format(frame=n) if "{frame" in args.snapshot else args.snapshot
                _write_png(path, image)
                written.append(path)
            if not last and feed is not None:
                time.sleep(max(0.0, period - (time.monotonic() - t0)))
    finally:
        off.release()
    print(
        f"holo view: wrote {written[-1] if len(written) == 1 else f'{len(written)} images'} "
        f"({', '.join(scene.names()) or 'nobody'} in view)"
    )
    return 0


def _write_png(path: str, image: np.ndarray) -> None:
    from PIL import Image

    folder = os.path.dirname(path)
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
    try:
        Image.fromarray(image).save(path)
    except OSError as exc:
        raise ViewerError(f"cannot write {path}: {exc.strerror or exc}") from None
