"""Fuzz the packet parser and every codec's decoder with mutated and truncated real packets.

Usage: python bench/fuzz_packets.py [--count N] [--seconds-per-case S] [--json FILE]

Starts from real packets (the synthetic performer and, when present, the kinect_five_people
person) of every codec, then truncates them, flips and overwrites bytes, splices random runs, and
half the time re-seals the CRC and length so the mutation reaches the codec itself. Every decode
must either succeed or raise a HoloError subclass; anything else, a decode slower than
--seconds-per-case, an allocation the 8 GB address-space cap refuses, or peak memory growing past
1.5 GB counts as a failure. Prints the error classes
seen and writes JSON. Target (issue 3): >= 100,000 cases, zero failures.
"""

from __future__ import annotations

import argparse
import collections
import resource
import struct
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench._util import RESULTS, SHARED_DATA, machine, write_json

AS_CAP_BYTES = 8 << 30


def seeds() -> list[bytes]:
    from holo.capture import CaptureConfig, CapturePipeline
    from holo.codec import StreamEncoder
    from holo.sources import open_source

    clouds = []
    with open_source("synthetic") as src:
        clouds.append(CapturePipeline(CaptureConfig(max_points=3000)).process(next(iter(src))))
    five = SHARED_DATA / "kinect_five_people" / "five_people.pcd"
    if five.exists():
        with open_source(f"pcd:{five}") as src:
            clouds.append(CapturePipeline(CaptureConfig(max_points=5000)).process(next(iter(src))))
    packets = []
    for cloud in clouds:
        for codec in ("holo", "raw", "draco", "draco-fast"):
            packets.append(StreamEncoder(codec).encode_bytes(cloud))
        packets.append(
            StreamEncoder("holo").encode_bytes(cloud.with_(pixels=None, frame="world"))
        )  # octree mode
    return packets


def reseal(data: bytes) -> bytes:
    if len(data) < 30:
        return data
    body = data[:-4]
    body = body[:8] + struct.pack("!I", len(body) + 4) + body[12:]
    return body + struct.pack("!I", zlib.crc32(body))


def mutate(rng: np.random.Generator, data: bytes) -> bytes:
    d = bytearray(data)
    kind = rng.integers(0, 6)
    if kind == 0:
        d = d[: rng.integers(0, len(d))]
    elif kind == 1:
        for _ in range(rng.integers(1, 8)):
            d[rng.integers(0, len(d))] ^= 1 << rng.integers(0, 8)
    elif kind == 2:
        for _ in range(rng.integers(1, 8)):
            d[rng.integers(0, len(d))] = rng.integers(0, 256)
    elif kind == 3:
        start = rng.integers(0, len(d))
        d[start : start + rng.integers(1, 64)] = rng.bytes(int(rng.integers(1, 64)))
    elif kind == 4:
        start = rng.integers(20, max(21, len(d)))
        d = d[:start] + bytearray(rng.bytes(int(rng.integers(0, 4096))))
    else:  # header fields: counts and sizes are the dangerous ones
        pos = rng.integers(0, min(len(d), 80))
        d[pos : pos + 4] = struct.pack(
            "!I", int(rng.choice([0, 1, 0xFFFF, 0xFFFFFFFF, rng.integers(0, 1 << 32)]))
        )
    out = bytes(d)
    return reseal(out) if rng.random() < 0.5 else out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seconds-per-case", type=float, default=2.0)
    parser.add_argument("--json", default=str(RESULTS / "fuzz_packets.json"))
    args = parser.parse_args()
    from holo.codec import StreamDecoder
    from holo.errors import HoloError

    base = seeds()
    # A decoder that allocates what a hostile header declares must fail here, not take the machine:
    # cap the address space (the JIT compilers and libraries need a few GB of it).
    resource.setrlimit(resource.RLIMIT_AS, (AS_CAP_BYTES, AS_CAP_BYTES))
    rng = np.random.default_rng(1234)
    outcomes: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    slowest = 0.0
    start = time.perf_counter()
    for i in range(args.count):
        candidate = mutate(rng, base[i % len(base)])
        t0 = time.perf_counter()
        try:
            StreamDecoder().decode(candidate)
            outcomes["decoded"] += 1
        except HoloError as exc:
            outcomes[type(exc).__name__] += 1
            if "bad_alloc" in str(exc) or "MemoryError" in str(exc):  # a decoder tried to allocate > the cap
                failures.append(f"case {i}: allocation bomb ({exc})")
        except Exception as exc:  # a failure: not a HoloError
            failures.append(f"case {i}: {type(exc).__name__}: {exc}")
        took = time.perf_counter() - t0
        slowest = max(slowest, took)
        if took > args.seconds_per_case:
            failures.append(f"case {i}: took {took:.2f} s")
        if (i + 1) % 20000 == 0:
            print(f"{i + 1} cases, {len(failures)} failures, {time.perf_counter() - start:.0f} s", flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if peak_mb > 1536:
        failures.append(f"peak memory {peak_mb:.0f} MB")
    print(
        f"\n{args.count} mutated packets from {len(base)} real ones in {time.perf_counter() - start:.0f} s; "
        f"slowest decode {slowest * 1000:.1f} ms; peak memory {peak_mb:.0f} MB"
    )
    for name, count in outcomes.most_common():
        print(f"  {count:7d}  {name}")
    print(f"failures: {len(failures)}")
    for f in failures[:20]:
        print("  " + f)
    write_json(
        args.json,
        {
            "benchmark": "fuzz_packets",
            "machine": machine(),
            "cases": args.count,
            "outcomes": dict(outcomes),
            "failures": failures[:100],
            "slowest_ms": slowest * 1000,
            "peak_memory_mb": peak_mb,
        },
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
