"""Capture pipeline speed: frames per second from decoding a frame to its person cloud, one core.

Usage: python bench/capture.py [--frames N] [--json FILE]

Each row decodes real frames from ../shared/data (files are re-read and re-decoded every frame:
the source loops) and runs person extraction.

- Depth only: pinned to one CPU with one thread per library. Target (issue 2): >= 60 frames/s on
  the 640x480 frames.
- With body tracking (MediaPipe segmentation every frame, Pose every third frame on a worker
  thread): on the whole 2-core machine. Target (issue 6): >= 30 frames/s on 640x480 with the
  skeleton refreshed at >= 10 Hz.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._util import RESULTS, SHARED_DATA, machine, one_core, percentile, table, write_json


def measure(
    name: str,
    spec: str,
    frames: int,
    intrinsics: tuple[float, float, float, float] | None = None,
    *,
    body: bool = False,
) -> dict:
    from holo.capture import CaptureConfig, CapturePipeline
    from holo.segment import SegmenterConfig
    from holo.sources import SourceOptions, open_source

    options = SourceOptions(intrinsics=intrinsics, loop=True)
    decode_ms, extract_ms, points = [], [], []
    refreshes = 0  # fresh MediaPipe Pose results
    last_age = 1 << 30
    with open_source(spec, options) as src:
        it = iter(src)
        config = CaptureConfig(body="on", segmenter=SegmenterConfig(keep="main")) if body else CaptureConfig()
        pipeline = CapturePipeline(config)
        for i in range(frames + 3):
            t0 = time.perf_counter()
            frame = next(it)
            t1 = time.perf_counter()
            cloud = pipeline.process(frame)
            t2 = time.perf_counter()
            if i >= 3:  # warm-up: caches, first RANSAC
                decode_ms.append((t1 - t0) * 1000)
                extract_ms.append((t2 - t1) * 1000)
                points.append(len(cloud))
                obs = getattr(pipeline.segmenter, "last_observation", None) if body else None
                # A fresh MediaPipe Pose result arrived in this frame when its age went down (results
                # come from a worker thread, so a new one is 0 or 1 frames old).
                if obs is not None and obs.found and obs.pose_age_frames < last_age:
                    refreshes += 1
                last_age = obs.pose_age_frames if obs is not None and obs.found else 1 << 30
        pipeline.close()
    total = [d + e for d, e in zip(decode_ms, extract_ms)]
    w, h = frame.intrinsics.width, frame.intrinsics.height
    # Fresh pose results per second of pipeline time (the joints' depth is re-read every frame).
    return {
        "source": name + (" + body tracking" if body else ""),
        "body_tracking": body,
        "skeleton_hz": refreshes * 1000 / sum(total) if body else None,
        "resolution": f"{w}x{h}",
        "frames": frames,
        "decode_ms_mean": sum(decode_ms) / len(decode_ms),
        "extract_ms_mean": sum(extract_ms) / len(extract_ms),
        "total_ms_p50": percentile(total, 50),
        "total_ms_p95": percentile(total, 95),
        "fps": 1000 * len(total) / sum(total),
        "points_mean": sum(points) / len(points),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=100, help="frames per row (default 100)")
    parser.add_argument("--json", default=str(RESULTS / "capture.json"), help="where to write results")
    args = parser.parse_args()
    kinect = (525.0, 525.0, 319.5, 239.5)
    rows = []
    five_people = (
        "kinect_five_people PNG pair (rgbd:)",
        f"rgbd:{SHARED_DATA / 'kinect_five_people'}",
        kinect,
    )
    synthetic = ("synthetic performer (rendered)", "synthetic", None)
    # With body tracking: the whole machine (MediaPipe runs its models on worker threads).
    for name, spec, k in (five_people, synthetic):
        if not spec.startswith("synthetic") and not Path(spec.split(":", 1)[1]).exists():
            continue
        rows.append(measure(name, spec, args.frames, k, body=True))
    one_core()  # depth only: one core (threads made from here on inherit the pinning)
    cases = [
        five_people,
        (
            "kinect_five_people organised PCD (pcd:)",
            f"pcd:{SHARED_DATA / 'kinect_five_people' / 'five_people.pcd'}",
            None,
        ),
        ("kinect_desk_sequence TIFF (rgbd:)", f"rgbd:{SHARED_DATA / 'kinect_desk_sequence'}", None),
        (
            "kinect_person_depth PNG, depth only (rgbd:)",
            f"rgbd:{SHARED_DATA / 'kinect_person_depth'}",
            kinect,
        ),
        (
            "azure_kinect_mkv, registered (k4a:)",
            f"k4a:{SHARED_DATA / 'azure_kinect_mkv' / 'recording.mkv'}",
            None,
        ),
        synthetic,
    ]
    for name, spec, k in cases:
        if not spec.startswith("synthetic") and not Path(spec.split(":", 1)[1]).exists():
            print(f"skipped {name}: {spec.split(':', 1)[1]} is absent")
            continue
        rows.append(measure(name, spec, args.frames, k))
    print(
        table(
            rows,
            [
                ("source", "source", "s"),
                ("resolution", "size", "s"),
                ("decode_ms_mean", "decode ms", ".1f"),
                ("extract_ms_mean", "person ms", ".1f"),
                ("total_ms_p95", "p95 ms", ".1f"),
                ("fps", "frames/s", ".1f"),
                ("points_mean", "points", ".0f"),
                ("skeleton_hz", "skeleton Hz", ".1f"),
            ],
        )
    )
    path = write_json(
        args.json,
        {
            "benchmark": "capture",
            "target_fps_depth_only_one_core": 60,
            "target_fps_body_tracking": 30,
            "target_skeleton_hz": 10,
            "machine": machine(),
            "rows": rows,
        },
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
