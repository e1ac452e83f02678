"""Shared fixtures: where the real recordings live, and small helpers every test file uses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# (re-exported: tests and benchmarks import the port helpers from here)
from holo.ports import free_port as free_port
from holo.ports import free_port_pair as free_port_pair

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HOLO_SHARED_DATA", REPO.parent / "shared" / "data"))
FIVE_PEOPLE = SHARED_DATA / "kinect_five_people"
DESK = SHARED_DATA / "kinect_desk_sequence"
PERSON_DEPTH = SHARED_DATA / "kinect_person_depth"
AZURE = SHARED_DATA / "azure_kinect_mkv"

KINECT_INTRINSICS = "525,525,319.5,239.5"


def need(path: Path) -> Path:
    """Skip (with the reason) when a shared recording is absent."""
    if not path.exists():
        pytest.skip(f"shared recording {path} is absent (../shared/data is not beside this checkout)")
    return path


@pytest.fixture
def five_people() -> Path:
    return need(FIVE_PEOPLE)


@pytest.fixture
def desk() -> Path:
    return need(DESK)


@pytest.fixture
def person_depth() -> Path:
    return need(PERSON_DEPTH)


@pytest.fixture
def azure() -> Path:
    return need(AZURE)


def run_holo(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `holo` command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "holo.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
