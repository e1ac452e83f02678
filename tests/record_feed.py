"""A stand-in for a call on the bus, for recording tests and bench/record.py.

``python -m tests.record_feed --bus ADDR --seconds S [--fps F] [--points N] [--manifest FILE]``
publishes, at ``--fps`` per participant, real packets: ``ana`` is the synthetic performer (16
frames, with her true skeleton in each packet), any other participant (``ben`` by default) the
kinect_five_people frame from the shared recordings (``--points`` at most, default 100,000; 16
copies with sensor-like depth noise, so packets differ frame to frame as a camera's do); each
packet is restamped (capture time now, sequence counting up; nothing re-encoded). The first
participant also speaks a 440 Hz tone read from a WAV file in 20 ms chunks, and all send stats
once a second. Prints ``ready`` once its packets are
encoded, then ``published ...``; ``--manifest`` gets, per topic, the message count and a SHA-256
of the payloads in order, so a test can check that a recording holds exactly what was sent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
import wave
from dataclasses import replace
from pathlib import Path

import numpy as np

from holo.bus import Bus
from holo.capture import CaptureConfig, CapturePipeline
from holo.codec import StreamEncoder
from holo.net.audio import AudioChunk, pack_audio
from holo.record.play import restamp_packet
from holo.sources import open_source
from tests.callkit import tone_wav
from tests.conftest import FIVE_PEOPLE

AUDIO_CHUNK_S = 0.02


def synthetic_packets(count: int, participant: str = "ana") -> list[bytes]:
    encoder = StreamEncoder("holo")
    pipeline = CapturePipeline(CaptureConfig(participant=participant))
    out = []
    with open_source("synthetic") as src:
        for frame, _ in zip(src, range(count)):
            cloud = pipeline.process(frame)
            if frame.truth_skeleton is not None:
                cloud = cloud.with_(skeleton=frame.truth_skeleton)
            out.append(encoder.encode_bytes(cloud))
    return out


def five_people_packets(
    participant: str = "ben", max_points: int = 100_000, count: int = 16, seed: int = 7
) -> list[bytes]:
    """``count`` distinct packets of the five_people frame: sensor-like depth noise (sigma 2 mm,
    on the 1 mm grid) per copy, so consecutive packets differ as a live camera's do."""
    encoder = StreamEncoder("holo")
    pipeline = CapturePipeline(CaptureConfig(participant=participant, max_points=max_points))
    with open_source(f"pcd:{FIVE_PEOPLE / 'five_people.pcd'}") as src:
        frame = next(iter(src))
    out = []
    rng = np.random.default_rng(seed)
    valid = frame.depth_m > 0
    for i in range(count):
        noisy = frame.depth_m + rng.normal(0.0, 0.002, frame.depth_m.shape).astype(np.float32)
        noisy = np.where(valid, np.round(noisy / 0.001) * 0.001, 0).astype(np.float32)
        out.append(encoder.encode_bytes(pipeline.process(replace(frame, depth_m=noisy, sequence=i))))
    return out


def tone_chunks(seconds: float) -> list[np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        path = tone_wav(Path(tmp) / "tone.wav", seconds=seconds)
        with wave.open(str(path), "rb") as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 1)
    step = int(rate * AUDIO_CHUNK_S)
    return [pcm[i : i + step] for i in range(0, len(pcm) - step + 1, step)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bus", required=True)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument(
        "--participants",
        default="ana,ben",
        help="comma-separated names: ana is the synthetic performer, any other the five_people frame",
    )
    ap.add_argument("--no-audio", action="store_true")
    ap.add_argument("--manifest", default=None)
    ap.add_argument("--start-delay", type=float, default=0.5, help="seconds between connecting and sending")
    ap.add_argument("--wait-go", action="store_true", help="after 'ready', wait for a line on stdin")
    args = ap.parse_args(argv)

    streams: dict[str, list[bytes]] = {}
    for seed, name in enumerate(args.participants.split(",")):
        if name == "ana":
            streams[name] = synthetic_packets(16)
        else:
            streams[name] = five_people_packets(name, max_points=args.points, seed=seed)
    speaker = next(iter(streams))
    audio = [] if args.no_audio else tone_chunks(args.seconds + 1.0)
    digests: dict[str, hashlib._Hash] = {}
    counts: dict[str, int] = {}
    bus = Bus(args.bus)
    pub = bus.publisher()

    def send(topic: str, payload: bytes) -> None:
        if pub.send(topic, payload):
            digests.setdefault(topic, hashlib.sha256()).update(payload)
            counts[topic] = counts.get(topic, 0) + 1

    print("ready", flush=True)
    if args.wait_go:
        sys.stdin.readline()
    time.sleep(args.start_delay)
    start = time.monotonic()
    frame_s = 1.0 / args.fps
    events: list[tuple[float, str, int]] = []  # (due, kind, index)
    n_frames = int(args.seconds * args.fps)
    for name in streams:
        events += [(i * frame_s, "cloud:" + name, i) for i in range(n_frames)]
    events += [
        (i * AUDIO_CHUNK_S, "audio:" + speaker, i)
        for i in range(min(len(audio), int(args.seconds / AUDIO_CHUNK_S)))
    ]
    events += [(float(s), "stats:" + name, s) for s in range(1, int(args.seconds) + 1) for name in streams]
    events.sort()
    for due, kind, i in events:
        delay = start + due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        what, name = kind.split(":")
        now_ns = time.time_ns()
        if what == "cloud":
            packets = streams[name]
            send(
                f"holo/{name}/cloud",
                restamp_packet(packets[i % len(packets)], sequence=i, capture_time_ns=now_ns),
            )
        elif what == "audio":
            chunk = AudioChunk(now_ns, 48000, 1, audio[i])
            send(f"holo/{name}/audio", pack_audio(chunk))
        else:
            stats = {
                "participant": name,
                "fps_sent": args.fps,
                "dropped_queue": 0,
                "latency_p50_ms": 40.0 + i,
                "latency_p95_ms": 60.0 + i,
                "clock_offset_ms": 1.5,
                "time_ns": now_ns,
                "total_frames_dropped_queue": 0,
            }
            send(f"holo/{name}/stats", json.dumps(stats).encode())
    elapsed = time.monotonic() - start
    time.sleep(0.3)
    bus.close()
    if args.manifest:
        manifest = {t: {"count": counts[t], "sha256": d.hexdigest()} for t, d in digests.items()}
        Path(args.manifest).write_text(json.dumps(manifest, indent=1))
    print(
        f"published {sum(counts.values())} messages in {elapsed:.2f} s (dropped {pub.stats.dropped})",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
