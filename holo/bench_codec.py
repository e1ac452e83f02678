"""``holo bench codec``: every codec on the same clouds in one run — size, speed, error.

Inputs: ``.ply`` files are unorganised clouds; an organised ``.pcd`` is one camera's frame, from
which the person is first extracted with the capture pipeline, as a call would, and coded as such.
With no files the shared recordings are used (``../shared/data``): the ``kinect_five_people``
people as a camera frame, the same points shuffled as an unordered cloud, and the three
``kinect_desk_sequence`` frames as unordered clouds.

For an unordered cloud every codec gets the points in the same random order (Draco's sequential
mode would otherwise profit from the camera's raster order), and Holo's octree uses Draco's
quantisation step (bounding box / (2^bits - 1)) — "equal quantisation".

Errors are measured against the input: geometry as the distance from each input point to the
nearest decoded point (max and RMS, millimetres), colour as the PSNR (dB, RGB) of each input point's
colour against its nearest decoded point's. Timing is the median of ``--repeat`` runs on one core.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from holo.codec import StreamDecoder, StreamEncoder
from holo.codec.packet import Packet, Section
from holo.errors import ConfigError
from holo.frame import PersonCloud

__all__ = ["BenchCloud", "default_clouds", "run"]

logger = logging.getLogger(__name__)

ALL_CODECS = ("holo", "draco", "draco-fast", "raw")
DRACO_BITS = 11


@dataclass(frozen=True)
class BenchCloud:
    name: str
    cloud: PersonCloud
    kind: str  # "organised" or "unorganised"


def _shared_data() -> Path:
    return Path(os.environ.get("HOLO_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _unordered(name: str, points: np.ndarray, colors: np.ndarray, seed: int = 0) -> BenchCloud:
    order = np.random.default_rng(seed).permutation(len(points))
    cloud = PersonCloud(
        points_m=np.ascontiguousarray(points[order]),
        colors=np.ascontiguousarray(colors[order]),
        capture_time_ns=0,
        sequence=0,
        participant="bench",
        frame="world",
    )
    return BenchCloud(name, cloud, "unorganised")


def load_file(path: str) -> list[BenchCloud]:
    from holo.capture import CapturePipeline
    from holo.ply import read_ply
    from holo.sources import open_source

    name = Path(path).stem
    if path.lower().endswith(".ply"):
        cloud = read_ply(path)
        return [_unordered(name, cloud.points_m, cloud.colors)]
    if path.lower().endswith(".pcd"):
        with open_source(f"pcd:{path}") as src:
            person = CapturePipeline().process(next(iter(src)))
        return [BenchCloud(f"{name} (person, camera frame)", person, "organised")]
    raise ConfigError(f"bench input {path} must be a .ply (unorganised) or an organised .pcd")


def default_clouds() -> list[BenchCloud]:
    from holo.geometry import backproject
    from holo.sources import open_source

    data = _shared_data()
    five = data / "kinect_five_people" / "five_people.pcd"
    desk = data / "kinect_desk_sequence"
    if not five.exists():
        raise ConfigError(f"no input files given and the shared recordings are absent ({data})")
    clouds = load_file(str(five))
    person = clouds[0].cloud
    clouds.append(_unordered("five_people (person, unordered)", person.points_m, person.colors))
    if desk.exists():
        with open_source(f"rgbd:{desk}") as src:
            for i, frame in enumerate(src):
                assert frame.color is not None
                points, _, flat = backproject(frame.depth_m, frame.intrinsics, frame.depth_m > 0)
                clouds.append(
                    _unordered(f"desk frame {i} (whole, unordered)", points, frame.color.reshape(-1, 3)[flat])
                )
    return clouds


def _nearest(reference: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial import cKDTree

    if len(reference) == 0:
        return np.full(len(query), np.inf), np.zeros(len(query), np.int64)
    dist, idx = cKDTree(reference.astype(np.float64)).query(query.astype(np.float64), k=1)
    return dist, idx


def _median_ms(fn: Any, repeat: int) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), result


def measure(bench: BenchCloud, codec: str, options: dict[str, Any], repeat: int) -> dict[str, Any]:
    cloud = bench.cloud
    encoder = StreamEncoder(codec, **options)
    encoder.encode_bytes(cloud)  # warm-up (numba compilation, caches)
    encode_ms, data = _median_ms(lambda: encoder.encode_bytes(cloud), repeat)
    decoder = StreamDecoder()
    decoder.decode(data)  # warm-up
    decode_ms, back = _median_ms(lambda: decoder.decode(data), repeat)
    packet = Packet.parse(data)
    n = max(len(cloud), 1)
    geometry = len(packet.sections.get(Section.GEOMETRY, b""))
    color = len(packet.sections.get(Section.COLOR, b""))
    if back.pixels is not None and cloud.pixels is not None and len(back) == len(cloud):
        dist = np.linalg.norm(back.points_m.astype(np.float64) - cloud.points_m, axis=1)
        idx = np.arange(len(cloud))
    else:
        dist, idx = _nearest(back.points_m, cloud.points_m)
    err = back.colors[idx].astype(np.float64) - cloud.colors if len(back) else np.full((len(cloud), 3), 255.0)
    mse = float((err**2).mean()) if len(cloud) else 0.0
    return {
        "cloud": bench.name,
        "kind": bench.kind,
        "codec": codec,
        "settings": {k: v for k, v in options.items()},
        "points": len(cloud),
        "decoded_points": len(back),
        "bytes": len(data),
        "bits_per_point": len(data) * 8 / n,
        "geometry_bpp": geometry * 8 / n,
        "color_bpp": color * 8 / n,
        "other_bpp": (len(data) - geometry - color) * 8 / n,
        "encode_ms": encode_ms,
        "decode_ms": decode_ms,
        "geometry_max_error_mm": float(dist.max() * 1000) if len(dist) else 0.0,
        "geometry_rms_error_mm": float(np.sqrt((dist**2).mean()) * 1000) if len(dist) else 0.0,
        "color_psnr_db": float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse)),
    }


def draco_step_mm(bench: BenchCloud, bits: int = DRACO_BITS) -> float:
    """Draco's quantisation step at ``bits`` (bounding box / (2^bits - 1)) in millimetres."""
    extent = float(np.ptp(bench.cloud.points_m, axis=0).max()) if len(bench.cloud) else 1.0
    return extent / (2**bits - 1) * 1000


def codec_options(codec: str, bench: BenchCloud) -> dict[str, Any]:
    """Settings for the headline comparison: Draco at 11 bits, Holo's octree at Draco's step."""
    if codec in ("draco", "draco-fast"):
        return {"quantization_bits": DRACO_BITS}
    if codec == "holo" and bench.kind == "unorganised":
        return {"octree_mm": draco_step_mm(bench)}
    return {}


def run(clouds: list[BenchCloud], codecs: list[str], repeat: int) -> list[dict[str, Any]]:
    rows = []
    for bench in clouds:
        for codec in codecs:
            rows.append(measure(bench, codec, codec_options(codec, bench), repeat))
    return rows


def rate_distortion(clouds: list[BenchCloud], repeat: int) -> list[dict[str, Any]]:
    """Sweeps for the plot: Holo's colour quality and depth step, Draco's quantisation bits."""
    rows = []
    for bench in clouds[:2]:
        for q in (30, 45, 60, 75, 90):
            rows.append(measure(bench, "holo", codec_options("holo", bench) | {"color_quality": q}, repeat))
        if bench.kind == "organised":
            for mm in (5.0, 10.0, 20.0):
                rows.append(measure(bench, "holo", {"geometry_mm": mm}, repeat))
        else:
            for bits in (9, 10, 12):
                rows.append(measure(bench, "holo", {"octree_mm": draco_step_mm(bench, bits)}, repeat))
        for bits in (8, 9, 10, 11, 12, 14):
            rows.append(measure(bench, "draco", {"quantization_bits": bits}, repeat))
    return rows


def plot(rows: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clouds = sorted({r["cloud"] for r in rows}, key=lambda c: [r["cloud"] for r in rows].index(c))
    fig, axes = plt.subplots(len(clouds), 2, figsize=(11, 4.2 * len(clouds)), squeeze=False)
    for row_axes, cloud in zip(axes, clouds):
        mine = [r for r in rows if r["cloud"] == cloud]
        ax_g, ax_c = row_axes
        for codec, marker in (("holo", "o"), ("draco", "s")):
            pts = sorted(
                (r["geometry_bpp"], max(r["geometry_rms_error_mm"], 1e-3))
                for r in mine
                if r["codec"] == codec
            )
            if pts:
                ax_g.plot(*zip(*pts), marker=marker, label=codec)
            cpts = sorted(
                (
                    r["color_bpp"]
                    if codec == "holo"
                    else r["bits_per_point"] - r["geometry_bpp"] + r["color_bpp"],
                    min(r["color_psnr_db"], 60.0),
                )
                for r in mine
                if r["codec"] == codec
            )
            if cpts:
                ax_c.plot(
                    *zip(*cpts), marker=marker, linestyle="-" if codec == "holo" else "none", label=codec
                )
        ax_g.set(
            xlabel="geometry bits/point",
            ylabel="geometry RMS error (mm, 0.001 = lossless)",
            yscale="log",
            title=cloud,
        )
        ax_c.set(
            xlabel="colour bits/point (Draco: total minus geometry)",
            ylabel="colour PSNR (dB; Draco is lossless, drawn at 60)",
            title=cloud,
        )
        ax_g.grid(alpha=0.3)
        ax_c.grid(alpha=0.3)
        ax_g.legend()
        ax_c.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def targets(rows: list[dict[str, Any]]) -> list[tuple[str, bool, str]]:
    """The issue's targets, checked against this run's rows."""
    out: list[tuple[str, bool, str]] = []

    def row(cloud_prefix: str, codec: str) -> dict[str, Any] | None:
        return next((r for r in rows if r["cloud"].startswith(cloud_prefix) and r["codec"] == codec), None)

    for prefix, kind in (
        ("five_people (person, camera", "organised"),
        ("five_people (person, unordered", "unorganised"),
        ("desk frame 0", "unorganised"),
    ):
        holo, draco, fast = row(prefix, "holo"), row(prefix, "draco"), row(prefix, "draco-fast")
        if not (holo and draco and fast):
            continue
        name = prefix.split(" (")[0] + f" ({kind})"
        if kind == "organised":
            out.append(
                (f"{name}: <= 4 bits/point", holo["bits_per_point"] <= 4, f"{holo['bits_per_point']:.2f}")
            )
            out.append(
                (
                    f"{name}: geometry lossless (0 mm)",
                    holo["geometry_max_error_mm"] == 0,
                    f"{holo['geometry_max_error_mm']:.3g} mm",
                )
            )
            out.append((f"{name}: encode <= 15 ms", holo["encode_ms"] <= 15, f"{holo['encode_ms']:.1f} ms"))
            out.append((f"{name}: decode <= 10 ms", holo["decode_ms"] <= 10, f"{holo['decode_ms']:.1f} ms"))
            out.append(
                (
                    f"{name}: <= 1/5 of draco",
                    holo["bytes"] * 5 <= draco["bytes"],
                    f"1/{draco['bytes'] / holo['bytes']:.1f}",
                )
            )
            out.append(
                (
                    f"{name}: faster than draco-fast both ways",
                    holo["encode_ms"] < fast["encode_ms"] and holo["decode_ms"] < fast["decode_ms"],
                    f"enc {holo['encode_ms']:.1f} vs {fast['encode_ms']:.1f}, dec {holo['decode_ms']:.1f} vs {fast['decode_ms']:.1f} ms",
                )
            )
        else:
            out.append(
                (
                    f"{name}: <= 1/3 of draco's bits",
                    holo["bytes"] * 3 <= draco["bytes"],
                    f"1/{draco['bytes'] / holo['bytes']:.2f}",
                )
            )
            out.append(
                (
                    f"{name}: encode >= 2x faster than draco-fast",
                    holo["encode_ms"] * 2 <= fast["encode_ms"],
                    f"{fast['encode_ms'] / holo['encode_ms']:.2f}x",
                )
            )
        out.append(
            (f"{name}: colour >= 33 dB", holo["color_psnr_db"] >= 33, f"{holo['color_psnr_db']:.2f} dB")
        )
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'cloud':36} {'codec':10} {'points':>7} {'bits/pt':>7} {'geom':>6} {'colour':>6} {'enc ms':>7} {'dec ms':>7} {'geo max mm':>10} {'PSNR dB':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['cloud'][:36]:36} {r['codec']:10} {r['points']:7d} {r['bits_per_point']:7.2f} {r['geometry_bpp']:6.2f} "
            f"{r['color_bpp']:6.2f} {r['encode_ms']:7.1f} {r['decode_ms']:7.1f} {r['geometry_max_error_mm']:10.3f} {r['color_psnr_db']:7.2f}"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help=".ply (unorganised) or organised .pcd files; default: the shared recordings",
    )
    parser.add_argument(
        "--codecs",
        default=",".join(ALL_CODECS),
        help=f"comma-separated codecs (default {','.join(ALL_CODECS)})",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=5,
        help="timing runs per measurement; the median is reported (default 5)",
    )
    parser.add_argument("--json", metavar="FILE", help="write one record per cloud and codec to FILE")
    parser.add_argument(
        "--plot", metavar="FILE.png", help="draw the rate-distortion plot against Draco to FILE.png"
    )
    parser.add_argument(
        "--one-core",
        action="store_true",
        help="pin to one CPU and one thread per library (as the targets assume)",
    )


def run_cli(args: argparse.Namespace) -> int:
    if args.one_core:
        import cv2

        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        cv2.setNumThreads(1)
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    if args.repeat < 1:
        raise ConfigError("--repeat must be at least 1")
    clouds = [c for f in args.files for c in load_file(f)] if args.files else default_clouds()
    rows = run(clouds, codecs, args.repeat)
    print_table(rows)
    checks = targets(rows)
    if checks:
        print("\ntargets:")
        for name, ok, value in checks:
            print(f"  {'PASS' if ok else 'MISS'}  {name}: {value}")
    sweep: list[dict[str, Any]] = []
    if args.plot:
        sweep = rate_distortion(clouds, max(1, args.repeat // 2))
        plot(rows + sweep, args.plot)
        print(f"\nwrote {args.plot}")
    if args.json:
        payload = {
            "benchmark": "codec",
            "rows": rows,
            "rate_distortion": sweep,
            "targets": [{"target": n, "met": ok, "value": v} for n, ok, v in checks],
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2, default=float) + "\n")
        print(f"wrote {args.json}")
    return 0
