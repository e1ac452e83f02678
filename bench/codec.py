"""Codec benchmark: Holo's codec beside Draco (smallest and fastest) and raw, on the shared recordings.

Usage: python bench/codec.py [FILES...] [--repeat N]

Runs `holo bench codec --one-core` and writes bench/results/codec.json and bench/results/codec_rd.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._util import RESULTS
from holo.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(
        main(
            [
                "bench",
                "codec",
                "--one-core",
                "--json",
                str(RESULTS / "codec.json"),
                "--plot",
                str(RESULTS / "codec_rd.png"),
                *args,
            ]
        )
    )
