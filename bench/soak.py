"""Soak: a long two-party call at 30 fps — does memory grow, does latency drift, does anything crash?

Usage: python bench/soak.py [--minutes M] [--source SRC] [--json FILE]

Runs `holo signal` and two `holo call` processes (alice and bob) on loopback for --minutes (default
10) after a 60 s warm-up, each sending --source (default: the built-in synthetic performer, whose
pose and point count change every frame) at 30 fps with body tracking off (--body) and voice from a generated tone. Every 10 s it
samples the resident memory (RSS) of every process — the signaling server, each call process and
each call's worker processes (capture+encode, decode). At the end it reads each receiver's
`--stats-json`. Figures, per process and per direction:

- RSS growth: the last sample minus the first one after the warm-up (MB), and the slope of a
  straight-line fit (MB per 10 minutes) — target < 20 MB per process;
- latency p95 over the first and the last minute of the measured period (or a
  third of it, when shorter than three minutes) — target: the end within
  10 % of the start (and fps for both minutes);
- crashes: a process that exited before the end, or a Python traceback in any log — target zero.

Writes JSON and a PNG (RSS and latency p95 over time) to bench/results/soak.*.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

import psutil

from bench._util import RESULTS, machine, percentile, table, write_json
from tests.callkit import HoloProcess, start_call, start_signal, tone_wav, wait_until

WARMUP_S = 60.0
SAMPLE_S = 10.0


def processes(named: dict[str, HoloProcess]) -> dict[str, psutil.Process]:
    """Every process to watch, by a readable name: the holo processes and their worker children."""
    out: dict[str, psutil.Process] = {}
    for name, hp in named.items():
        try:
            root = psutil.Process(hp.proc.pid)
        except psutil.Error:
            continue
        out[name] = root
        kids = sorted(root.children(recursive=True), key=lambda p: p.create_time())
        for i, kid in enumerate(k for k in kids if "resource_tracker" not in " ".join(k.cmdline())):
            out[f"{name} worker {i + 1}"] = kid
    return out


def window(frames: list[dict[str, Any]], t0_ns: float, t1_ns: float) -> dict[str, float]:
    kept = [f for f in frames if t0_ns <= f["arrival_ns"] < t1_ns]
    lat = [f["latency_ms"] for f in kept]
    return {
        "frames": len(kept),
        "fps": len(kept) / ((t1_ns - t0_ns) / 1e9),
        "p50_ms": percentile(lat, 50),
        "p95_ms": percentile(lat, 95),
    }


def slope_mb_per_10min(series: list[tuple[float, float]]) -> float:
    import numpy as np

    if len(series) < 3:
        return float("nan")
    t, mb = np.array(series).T
    return float(np.polyfit(t, mb, 1)[0] * 600)


def plot(
    rss: dict[str, list[tuple[float, float]]], p95: dict[str, list[tuple[float, float]]], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for name, series in rss.items():
        if series:
            t, mb = zip(*series)
            a.plot(t, mb, lw=1, label=name)
    a.set(ylabel="RSS (MB)", title="Holo soak: two-party call on loopback")
    a.legend(fontsize=7, ncol=2)
    a.grid(alpha=0.3)
    for name, series in p95.items():
        if series:
            t, ms = zip(*series)
            b.plot(t, ms, lw=1, label=name)
    b.axvline(WARMUP_S, color="grey", ls=":", lw=0.8)
    b.set(xlabel="seconds since the call came up", ylabel="latency p95 per minute (ms)")
    b.legend(fontsize=8)
    b.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> int:
    global WARMUP_S
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="measured minutes after the warm-up (default 10)"
    )
    parser.add_argument("--source", default="synthetic", help="what each side sends (default: synthetic)")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument(
        "--body",
        default="off",
        help="body tracking on each side (default off: MediaPipe on both sides of one 2-core machine "
        "cannot also leave room for two 30 fps calls)",
    )
    parser.add_argument("--warmup", type=float, default=60.0, help="warm-up seconds (default 60)")
    parser.add_argument("--json", default=str(RESULTS / "soak.json"))
    args = parser.parse_args()
    WARMUP_S = args.warmup
    measured_s = args.minutes * 60
    with tempfile.TemporaryDirectory(prefix="holo-soak-") as tmp_name:
        tmp = Path(tmp_name)
        tone = tone_wav(tmp / "tone.wav")
        signal_proc, url = start_signal(tmp)
        common = [
            "--source",
            args.source,
            "--fps",
            str(args.fps),
            "--body",
            args.body,
            "--audio-in",
            str(tone),
            "--seconds",
            str(WARMUP_S + measured_s + 60),
        ]
        alice, _ = start_call(tmp, "alice", url, *common, "--stats-json", str(tmp / "alice.json"))
        bob, _ = start_call(tmp, "bob", url, *common, "--stats-json", str(tmp / "bob.json"))
        named = {"signal": signal_proc, "alice": alice, "bob": bob}
        rss: dict[str, list[tuple[float, float]]] = {}
        early_exit: list[str] = []
        try:
            wait_until(lambda: "is up" in alice.text() and "is up" in bob.text(), 90, "the call to connect")
            up = time.monotonic()
            up_ns = time.time_ns()
            end = up + WARMUP_S + measured_s
            while time.monotonic() < end:
                now = time.monotonic() - up
                for name, proc in processes(named).items():
                    with contextlib.suppress(psutil.Error):
                        rss.setdefault(name, []).append((now, proc.memory_info().rss / 1e6))
                for name, hp in named.items():
                    if hp.proc.poll() is not None and name not in early_exit:
                        early_exit.append(name)
                        print(f"{name} exited early with code {hp.proc.returncode}", flush=True)
                if int(now) % 60 < SAMPLE_S:
                    print(
                        f"  {now / 60:4.1f} min: "
                        + ", ".join(
                            f"{n} {s[-1][1]:.0f} MB" for n, s in rss.items() if s and " worker" not in n
                        ),
                        flush=True,
                    )
                time.sleep(SAMPLE_S)
        finally:
            for hp in (bob, alice):
                hp.stop(60)
            signal_proc.stop()
        logs = {name: hp.text() for name, hp in named.items()}
        stats = {
            who: json.loads((tmp / f"{who}.json").read_text())
            for who in ("alice", "bob")
            if (tmp / f"{who}.json").exists()
        }
    crashes = list(early_exit) + [name for name, text in logs.items() if "Traceback" in text]
    memory_rows = []
    for name, series in rss.items():
        after = [(t, mb) for t, mb in series if t >= WARMUP_S]
        if len(after) < 2:
            continue
        growth = after[-1][1] - after[0][1]
        memory_rows.append(
            {
                "process": name,
                "rss_start_mb": after[0][1],
                "rss_end_mb": after[-1][1],
                "growth_mb": growth,
                "slope_mb_per_10min": slope_mb_per_10min(after),
                "pass": growth < 20.0,
            }
        )
    latency_rows = []
    p95_series: dict[str, list[tuple[float, float]]] = {}
    for who, data in stats.items():
        frames = data["frames"]
        other = "bob" if who == "alice" else "alice"
        t_start = up_ns + WARMUP_S * 1e9
        t_end = up_ns + (WARMUP_S + measured_s) * 1e9
        span = min(60e9, (t_end - t_start) / 3)
        first = window(frames, t_start, t_start + span)
        last = window(frames, t_end - span, t_end)
        drift = (
            (last["p95_ms"] - first["p95_ms"]) / first["p95_ms"] * 100 if first["frames"] else float("nan")
        )
        latency_rows.append(
            {
                "direction": f"{other} -> {who}",
                "fps_first_min": first["fps"],
                "fps_last_min": last["fps"],
                "p95_first_min_ms": first["p95_ms"],
                "p95_last_min_ms": last["p95_ms"],
                "p95_change_pct": drift,
                "pass": drift <= 10.0,
            }
        )
        series = []
        minute = 0
        while up_ns + (minute + 1) * 60e9 <= t_end:
            w = window(frames, up_ns + minute * 60e9, up_ns + (minute + 1) * 60e9)
            series.append(((minute + 0.5) * 60, w["p95_ms"]))
            minute += 1
        p95_series[f"{other} -> {who}"] = series
    print()
    print(
        table(
            memory_rows,
            [
                ("process", "process", "s"),
                ("rss_start_mb", "RSS start MB", ".1f"),
                ("rss_end_mb", "RSS end MB", ".1f"),
                ("growth_mb", "growth MB", "+.1f"),
                ("slope_mb_per_10min", "fit MB/10 min", "+.1f"),
                ("pass", "< 20 MB", ""),
            ],
        )
    )
    print()
    print(
        table(
            latency_rows,
            [
                ("direction", "direction", "s"),
                ("fps_first_min", "fps first min", ".1f"),
                ("fps_last_min", "fps last min", ".1f"),
                ("p95_first_min_ms", "p95 first ms", ".0f"),
                ("p95_last_min_ms", "p95 last ms", ".0f"),
                ("p95_change_pct", "change %", "+.1f"),
                ("pass", "<= +10 %", ""),
            ],
        )
    )
    print(f"\ncrashes: {len(crashes)}" + (f" ({', '.join(crashes)})" if crashes else ""))
    png = Path(args.json).with_suffix(".png")
    plot(rss, p95_series, png)
    write_json(
        args.json,
        {
            "benchmark": "soak",
            "machine": machine(),
            "minutes": args.minutes,
            "warmup_s": WARMUP_S,
            "source": args.source,
            "fps": args.fps,
            "memory": memory_rows,
            "latency": latency_rows,
            "crashes": crashes,
            "rss_series": rss,
            "p95_per_minute": p95_series,
        },
    )
    print(f"wrote {args.json} and {png}")
    ok = not crashes and all(r["pass"] for r in memory_rows) and all(r["pass"] for r in latency_rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
