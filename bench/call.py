"""Call benchmark: two `holo call` processes on loopback, a real person at 30 fps, clean and lossy.

Usage: python bench/call.py [--seconds S] [--json FILE] [--points N] [--fps F] [--loss P] [--body MODE]

Runs a `holo signal` server and two calls (alice and bob), each sending the kinect_five_people
people held as a live camera (`--source still:pcd:...`, at most --points points per frame, default
100,000) at --fps, with voice from a generated tone. Two runs:

1. clean: direct loopback (ICE host candidates on 127.0.0.1);
2. impaired: bob's uplink goes through a TURN server (coturn) behind a user-space UDP relay that
   drops --loss (default 5 %) of bob's datagrams; alice receives bob's frames through it.

Figures come from each receiver's `--stats-json` after a 5 s warm-up: frames received per second,
end-to-end latency (capture on one side to decoded on the other, with the clock offset the peers
estimate) p50/p95, the received bitrate, the longest gap between frames (stall), and CPU per side
(the call process and its capture worker, % of one core). Writes JSON and a latency-over-time PNG.
Targets (issue 4): >= 29 fps, p50 <= 60 ms, p95 <= 100 ms, <= 12 Mbit/s clean; no stall > 1 s and
>= 25 fps impaired.

Body tracking (MediaPipe, `--body`) is off by default: this measures the call itself (capture with
depth-only person extraction, encode, WebRTC, decode). With `--body auto` both peers also run
MediaPipe, which on this 2-core machine (both peers on it) takes most of the CPU the call needs;
that configuration is measured separately (`--body auto --skip-impaired --json
bench/results/call_body.json`).
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

import itertools

import psutil

from bench._util import RESULTS, SHARED_DATA, machine, percentile, table, write_json
from tests.callkit import start_call, start_signal, start_turn, tone_wav, turn_args, wait_until
from tests.lossy_relay import LossyRelay

WARMUP_S = 5.0


def cpu_seconds(pid: int) -> float:
    try:
        proc = psutil.Process(pid)
        total = sum(proc.cpu_times()[:2])
        for child in proc.children(recursive=True):
            total += sum(child.cpu_times()[:2])
        return total
    except psutil.Error:
        return 0.0


def analyse(stats_path: Path) -> dict[str, Any]:
    data = json.loads(stats_path.read_text())
    frames = data["frames"]
    if not frames:
        return {
            "fps_received": 0.0,
            "latency_p50_ms": None,
            "latency_p95_ms": None,
            "bitrate_mbps": 0.0,
            "stall_max_ms": None,
            "frames": 0,
        }
    t0 = frames[0]["arrival_ns"] + WARMUP_S * 1e9
    kept = [f for f in frames if f["arrival_ns"] >= t0]
    arrivals = [f["arrival_ns"] for f in kept]
    duration = (arrivals[-1] - arrivals[0]) / 1e9 if len(arrivals) > 1 else 0.0
    gaps = [(b - a) / 1e6 for a, b in itertools.pairwise(arrivals)]
    lat = [f["latency_ms"] for f in kept]
    periods = [p for p in data.get("periods", []) if p["time_ns"] >= t0]
    return {
        "frames": len(kept),
        "fps_received": (len(kept) - 1) / duration if duration else 0.0,
        "latency_p50_ms": percentile(lat, 50),
        "latency_p95_ms": percentile(lat, 95),
        "bitrate_mbps": sum(p["bitrate_in_mbps"] for p in periods) / len(periods) if periods else 0.0,
        "stall_max_ms": max(gaps) if gaps else None,
        "series": [((f["arrival_ns"] - frames[0]["arrival_ns"]) / 1e9, f["latency_ms"]) for f in frames],
        "summary": data["summary"],
    }


def run(name: str, tmp: Path, args: argparse.Namespace, *, loss: float = 0.0) -> list[dict[str, Any]]:
    five = SHARED_DATA / "kinect_five_people" / "five_people.pcd"
    source = [
        "--source",
        f"still:pcd:{five}",
        "--max-points",
        str(args.points),
        "--fps",
        str(args.fps),
        "--body",
        args.body,
    ]
    tone = tone_wav(tmp / "tone.wav")
    signal_proc, url = start_signal(tmp)
    turn = relay = None
    bob_extra: list[str] = []
    if loss > 0:
        started = start_turn(tmp)
        if started is None:
            raise SystemExit("the impaired run needs coturn's turnserver (apt-get install coturn)")
        turn, turn_port = started
        relay = LossyRelay(("127.0.0.1", turn_port), loss_up=loss)
        bob_extra = turn_args(relay.port)
    seconds = str(args.seconds + 15)
    alice, _ = start_call(
        tmp,
        "alice",
        url,
        *source,
        "--audio-in",
        str(tone),
        "--seconds",
        seconds,
        "--stats-json",
        str(tmp / "alice.json"),
        log_suffix=f"-{name}",
    )
    time.sleep(0.5)
    bob, _ = start_call(
        tmp,
        "bob",
        url,
        *source,
        "--audio-in",
        str(tone),
        "--seconds",
        seconds,
        *bob_extra,
        "--stats-json",
        str(tmp / "bob.json"),
        log_suffix=f"-{name}",
    )
    try:
        wait_until(lambda: "is up" in alice.text() and "is up" in bob.text(), 60, "the call to connect")
        cpu0 = {p: cpu_seconds(p.proc.pid) for p in (alice, bob)}
        t0 = time.monotonic()
        time.sleep(args.seconds + WARMUP_S)
        wall = time.monotonic() - t0
        cpu = {p: (cpu_seconds(p.proc.pid) - cpu0[p]) / wall * 100 for p in (alice, bob)}
    finally:
        for p in (bob, alice):
            p.stop(30)
        signal_proc.stop()
        if relay is not None:
            relay.close()
        if turn is not None:
            turn.terminate()
            turn.wait(10)
    rows = []
    for receiver, sender in ((alice, bob), (bob, alice)):
        who = receiver.args[receiver.args.index("--participant") + 1]
        other = sender.args[sender.args.index("--participant") + 1]
        result = analyse(tmp / f"{who}.json")
        rows.append(
            {
                "run": name,
                "direction": f"{other} -> {who}",
                "loss": loss if other == "bob" else 0.0,
                "cpu_sender_pct": cpu[sender],
                "cpu_receiver_pct": cpu[receiver],
                **result,
            }
        )
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    for r in rows:
        if r.get("series"):
            t, lat = zip(*r["series"])
            ax.plot(t, lat, lw=0.8, label=f"{r['run']}: {r['direction']}")
    ax.axhline(100, color="grey", ls="--", lw=0.8)
    ax.axvline(WARMUP_S, color="grey", ls=":", lw=0.8)
    ax.set(
        xlabel="seconds since the first frame",
        ylabel="end-to-end latency (ms)",
        ylim=(0, 400),
        title="Holo call on loopback: capture -> decoded at the far side",
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per run (default 30)")
    parser.add_argument("--points", type=int, default=100_000, help="points per frame (default 100000)")
    parser.add_argument("--fps", type=float, default=30.0, help="frames per second (default 30)")
    parser.add_argument(
        "--loss", type=float, default=0.05, help="datagram loss on bob's uplink in the impaired run"
    )
    parser.add_argument(
        "--body",
        choices=("off", "auto", "on"),
        default="off",
        help="body tracking on both peers (default off: the call alone; see above)",
    )
    parser.add_argument("--json", default=str(RESULTS / "call.json"))
    parser.add_argument("--skip-impaired", action="store_true")
    args = parser.parse_args()
    if not (SHARED_DATA / "kinect_five_people" / "five_people.pcd").exists():
        raise SystemExit(f"the shared recordings are absent ({SHARED_DATA})")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="holo-bench-call-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "clean").mkdir()
        rows += run("clean", tmp / "clean", args)
        if not args.skip_impaired:
            (tmp / "lossy").mkdir()
            rows += run(f"{args.loss:.0%} loss", tmp / "lossy", args, loss=args.loss)
    print(
        table(
            rows,
            [
                ("run", "run", "s"),
                ("direction", "direction", "s"),
                ("fps_received", "fps", ".1f"),
                ("latency_p50_ms", "p50 ms", ".0f"),
                ("latency_p95_ms", "p95 ms", ".0f"),
                ("bitrate_mbps", "Mbit/s", ".2f"),
                ("stall_max_ms", "stall ms", ".0f"),
                ("cpu_sender_pct", "CPU send %", ".0f"),
                ("cpu_receiver_pct", "CPU recv %", ".0f"),
            ],
        )
    )
    png = Path(args.json).with_suffix(".png")
    plot(rows, png)
    for r in rows:
        r.pop("series", None)
    write_json(
        args.json,
        {
            "benchmark": "call",
            "machine": machine(),
            "points": args.points,
            "fps": args.fps,
            "body": args.body,
            "seconds": args.seconds,
            "rows": rows,
        },
    )
    print(f"\nwrote {args.json} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
