"""Viewer speed on this machine's software GL (Mesa llvmpipe through EGL, no display).

Usage: python bench/viewer.py [--frames N] [--json FILE]

1. Frames per second rendering 1 and 2 participants of 100,000 points each at 1280x720, mono and
   side-by-side stereo, with the viewer's renderer (round splats sized by distance, depth test,
   skeleton and grid) — beside a minimal raw GL point renderer (fixed 2-pixel points, one draw
   call, nothing else) measured in the same run on the same points. Target: >= 80 % of baseline.
2. The delay from a packet arriving on the bus to its first displayed frame, in frames, with
   packets published at 30 fps while the viewer renders as fast as it can. Target: <= 1 frame.
   Decoding a 100k-point packet (in the feed's own process) comes first; the delay is also given
   from the moment the decoded cloud reached the scene, which is the viewer's own queueing.
3. Fps rows interleave five rounds of ours and the baseline and take each one's median.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import moderngl
import numpy as np

from bench._util import RESULTS, SHARED_DATA, machine, percentile, table, write_json

W, H = 1280, 720

_RAW_VS = """
#version 330
uniform mat4 mvp;
in vec3 in_pos;
in vec4 in_color;
out vec3 v_color;
void main() { gl_Position = mvp * vec4(in_pos, 1.0); gl_PointSize = 2.0; v_color = in_color.rgb; }
"""
_RAW_FS = """
#version 330
in vec3 v_color;
out vec4 color;
void main() { color = vec4(v_color, 1.0); }
"""


def people(n_points: int) -> list:
    from holo.capture import CaptureConfig, CapturePipeline
    from holo.sources import open_source

    five = SHARED_DATA / "kinect_five_people" / "five_people.pcd"
    spec = f"pcd:{five}" if five.exists() else "synthetic"
    with open_source(spec) as src:
        cloud = CapturePipeline(CaptureConfig(max_points=n_points)).process(next(iter(src)))
    return [cloud.with_(participant="alice"), cloud.with_(participant="bob")]


def time_frames(render, ctx: moderngl.Context, frames: int) -> float:
    render()
    ctx.finish()
    t0 = time.perf_counter()
    for _ in range(frames):
        render()
        ctx.finish()
    return frames / (time.perf_counter() - t0)


def measure_fps(frames: int, n_points: int) -> list[dict]:
    from viewer.app import fit_camera
    from viewer.offscreen import Offscreen, stereo_eyes
    from viewer.render import Eye
    from viewer.scene import Scene

    clouds = people(n_points)
    off = Offscreen(W, H)
    ctx = off.ctx
    raw = ctx.program(vertex_shader=_RAW_VS, fragment_shader=_RAW_FS)
    rows = []
    for count in (1, 2):
        scene = Scene(timeout_s=1e9)
        for c in clouds[:count]:
            scene.update(c)
        camera = fit_camera(scene, W / H)
        visible = scene.snapshot()
        points = sum(len(p.points) for p, _ in visible)
        # The baseline draws the same world-space points with one fixed matrix per participant.
        vaos = []
        for p, _ in visible:
            pos = ctx.buffer(
                np.ascontiguousarray(
                    (np.c_[p.points, np.ones(len(p.points))] @ p.model_matrix().T)[:, :3], np.float32
                )
            )
            col = np.empty((len(p.points), 4), np.uint8)
            col[:, :3], col[:, 3] = p.colors, 255
            vaos.append(ctx.vertex_array(raw, [(pos, "3f", "in_pos"), (ctx.buffer(col), "4f1", "in_color")]))
        for stereo in (False, True):
            eyes = (
                stereo_eyes(camera, W, H, 0.064)
                if stereo
                else [Eye(camera.view(), camera.projection(W / H), (0, 0, W, H))]
            )

            def ours(visible=visible, eyes=eyes) -> None:  # type: ignore[no-untyped-def]
                off.fbo.use()
                off.renderer.render(visible, eyes)

            def baseline(eyes=eyes, vaos=vaos) -> None:  # type: ignore[no-untyped-def]
                off.fbo.use()
                ctx.enable(moderngl.DEPTH_TEST | moderngl.PROGRAM_POINT_SIZE)
                for eye in eyes:
                    ctx.viewport = eye.viewport
                    ctx.clear(0.07, 0.08, 0.1, 1.0, depth=1.0, viewport=eye.viewport)
                    raw["mvp"].write(np.ascontiguousarray((eye.proj @ eye.view).T, np.float32).tobytes())
                    for vao in vaos:
                        vao.render(moderngl.POINTS)

            # Interleaved rounds, median of each: a machine's slow patch hits both sides alike.
            rounds = [(time_frames(ours, ctx, frames), time_frames(baseline, ctx, frames)) for _ in range(5)]
            fps_ours = float(np.median([r[0] for r in rounds]))
            fps_base = float(np.median([r[1] for r in rounds]))
            rows.append(
                {
                    "participants": count,
                    "points": points,
                    "mode": "stereo" if stereo else "mono",
                    "fps": fps_ours,
                    "baseline_fps": fps_base,
                    "ratio": fps_ours / fps_base,
                }
            )
    off.release()
    return rows


def measure_display_delay(seconds: float, n_points: int) -> dict:
    """Packets published at 30 fps; frames rendered as fast as possible; how many frames until shown."""
    from holo.bus import Bus, cloud_topic
    from holo.codec import StreamEncoder
    from tests.conftest import free_port_pair
    from viewer.app import fit_camera
    from viewer.offscreen import Offscreen
    from viewer.scene import BusFeed, Scene

    address = f"tcp://127.0.0.1:{free_port_pair()}"
    scene = Scene()
    feed = BusFeed(scene, address)
    cloud = people(n_points)[0]
    packets = [StreamEncoder("holo").encode_bytes(cloud.with_(sequence=i)) for i in range(64)]
    stop = threading.Event()

    def publish() -> None:
        with Bus(address, serve=False) as bus:
            pub = bus.publisher()
            i = 0
            while not stop.is_set():
                pub.send(cloud_topic("alice"), packets[i % len(packets)])
                i += 1
                time.sleep(1 / 30)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    off = Offscreen(W, H)
    delays_frames, delays_ms, frame_ms = [], [], []
    delays_ready: list[int] = []
    decode_ms: list[float] = []
    try:
        deadline = time.monotonic() + 20
        while not scene.names() and time.monotonic() < deadline:
            time.sleep(0.01)
        camera = fit_camera(scene, W / H)
        seen_version = -1
        end = time.monotonic() + seconds
        starts: list[int] = []  # wall-clock start of every rendered frame
        while time.monotonic() < end:
            p = next((q for q, _ in scene.snapshot() if q.name == "alice"), None)
            version = p.version if p else -1
            arrived_ns = feed.last_arrival_ns.get("alice", 0)
            start_ns = time.time_ns()
            t0 = time.perf_counter()
            off.render(scene, camera)
            off.finish()
            frame_ms.append((time.perf_counter() - t0) * 1000)
            if version != seen_version and version >= 0:
                # The first frame showing this version: how many frames began after the packet
                # arrived (and after it was decoded) and still showed the older version (0 = it made
                # the very next frame).
                delays_frames.append(sum(1 for s in starts if s > arrived_ns))
                ready_ns = feed.last_ready_ns.get("alice", arrived_ns)
                delays_ready.append(sum(1 for s in starts if s > ready_ns))
                decode_ms.append((ready_ns - arrived_ns) / 1e6)
                delays_ms.append((time.time_ns() - arrived_ns) / 1e6)
                seen_version = version
            starts = [*starts[-50:], start_ns]
    finally:
        stop.set()
        thread.join(2)
        off.release()
        feed.close()
    shown_next = float(np.mean([d <= 1 for d in delays_frames])) if delays_frames else 0.0
    # d == 0: shown by the frame that started right after it arrived; d == 1: one frame was already
    # under way (rendering can't be interrupted), so it shows in the one after — both are "<= 1 frame".
    return {
        "frames_rendered": len(frame_ms),
        "frame_ms_p50": percentile(frame_ms, 50),
        "arrival_to_display_ms_p50": percentile(delays_ms, 50),
        "arrival_to_display_ms_p95": percentile(delays_ms, 95),
        "delay_frames_max": max(delays_frames) if delays_frames else None,
        "shown_within_one_frame": shown_next,
        "arrival_to_ready_ms_p50": percentile(decode_ms, 50),
        "ready_shown_within_one_frame": float(np.mean([d <= 1 for d in delays_ready]))
        if delays_ready
        else 0.0,
        "ready_delay_frames_max": max(delays_ready) if delays_ready else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=40, help="frames timed per row (default 40)")
    parser.add_argument("--points", type=int, default=100_000, help="points per participant (default 100000)")
    parser.add_argument("--json", default=str(RESULTS / "viewer.json"))
    args = parser.parse_args()
    rows = measure_fps(args.frames, args.points)
    print(
        table(
            rows,
            [
                ("participants", "people", "d"),
                ("points", "points", "d"),
                ("mode", "mode", "s"),
                ("fps", "fps", ".1f"),
                ("baseline_fps", "raw GL fps", ".1f"),
                ("ratio", "ratio", ".2f"),
            ],
        )
    )
    delay = measure_display_delay(8.0, args.points)
    print(
        f"\npacket arrival -> first displayed frame: p50 {delay['arrival_to_display_ms_p50']:.0f} ms, "
        f"p95 {delay['arrival_to_display_ms_p95']:.0f} ms; shown in the next frame {delay['shown_within_one_frame']:.0%} "
        f"of the time (max {delay['delay_frames_max']} frames late); frame time p50 {delay['frame_ms_p50']:.0f} ms"
    )
    print(
        f"decoded and handed to the scene {delay['arrival_to_ready_ms_p50']:.0f} ms after arrival (p50); from then "
        f"shown within one frame {delay['ready_shown_within_one_frame']:.0%} of the time "
        f"(max {delay['ready_delay_frames_max']} frames)"
    )
    write_json(
        args.json,
        {
            "benchmark": "viewer",
            "machine": machine(),
            "size": [W, H],
            "rows": rows,
            "display_delay": delay,
            "renderer": "Mesa llvmpipe via EGL",
        },
    )
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
