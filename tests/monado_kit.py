"""Helpers for tests against Monado, a real OpenXR runtime (``../shared/tools/monado-run.sh``).

A command runs under ``monado-run.sh --hmd remote --compositor null`` in its own process group (so the
runtime, Xvfb and the command are stopped together if the test fails), and the test scripts the
headset's pose with ``monado-remote-pose.py`` over TCP 127.0.0.1:4242. Runs are serialised with a
lock file: the remote driver's port and the Xvfb display :91 are fixed, so two runs at once would
collide.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tests.conftest import REPO

__all__ = [
    "MONADO_RUN",
    "MONADO_SERVICE",
    "POSE_SCRIPT",
    "MonadoRun",
    "monado_lock",
    "monado_missing",
    "person_mask",
    "stream_pose",
]

TOOLS = REPO.parent / "shared" / "tools"
MONADO_RUN = TOOLS / "monado-run.sh"
POSE_SCRIPT = TOOLS / "monado-remote-pose.py"
MONADO_SERVICE = Path("/opt/monado/bin/monado-service")
LOCK_FILE = Path("/tmp/holo-monado-tests.lock")


def monado_missing() -> str | None:
    """Why Monado tests cannot run here, or None."""
    if not MONADO_SERVICE.exists():
        return f"{MONADO_SERVICE} is missing (build it with ../shared/tools/monado-build.sh)"
    for tool in (MONADO_RUN, POSE_SCRIPT):
        if not tool.exists():
            return f"{tool} is missing (../shared/tools is not beside this checkout)"
    return None


@contextlib.contextmanager
def monado_lock(timeout_s: float = 120.0) -> Iterator[None]:
    """Hold the machine-wide Monado test lock (port 4242 and display :91 are shared)."""
    with open(LOCK_FILE, "a") as f:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another Monado run held {LOCK_FILE} for {timeout_s:.0f} s") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class MonadoRun:
    """``monado-run.sh --hmd HMD --compositor COMP -- COMMAND`` in its own process group, output to a log."""

    def __init__(
        self, command: list[str], log: Path, *, hmd: str = "remote", compositor: str = "null",
        env: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.log = log
        self._out = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["sh", str(MONADO_RUN), "--hmd", hmd, "--compositor", compositor, "--", *command],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(
                f"the Monado run did not finish within {timeout_s:.0f} s:\n{self.output()}"
            ) from None

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """Stop the run and everything it started (runtime, Xvfb, the command).

        First the command alone, so monado-run.sh stops the runtime and Xvfb and removes its folder;
        then, if anything is left, the whole process group.
        """
        if self.proc.poll() is None:
            import psutil

            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(self.proc.pid).children():
                    if child.name() not in ("monado-service", "Xvfb"):
                        child.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        if self.proc.poll() is None:
            for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, sig)
                try:
                    self.proc.wait(grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        with contextlib.suppress(ProcessLookupError):  # stragglers of the group (the service, Xvfb)
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._out.close()

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def __enter__(self) -> MonadoRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stream_pose(
    x: float, y: float, z: float, yaw_deg: float, seconds: float, *, connect_s: float = 15.0
) -> None:
    """Hold the remote headset at (x, y, z) turned ``yaw_deg`` about +y for ``seconds`` (retrying the connect).

    Monado's remote driver keeps the last pose after the script disconnects. y = 1.6 is a standing
    eye height: the runtime's LOCAL space then reports y = 0.
    """
    deadline = time.monotonic() + connect_s
    while True:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, str(POSE_SCRIPT), str(x), str(y), str(z), str(yaw_deg), str(seconds)],
            capture_output=True,
            text=True,
            timeout=seconds + 15,
        )
        if done.returncode == 0:
            return
        refused = "Connection refused" in done.stderr or "closed the connection" in done.stderr
        if not refused or time.monotonic() > deadline:
            raise AssertionError(f"monado-remote-pose.py failed ({done.returncode}):\n{done.stderr}")
        time.sleep(max(0.0, 0.2 - (time.monotonic() - started)))


def person_mask(image: np.ndarray, tolerance: int = 4) -> np.ndarray:
    """Pixels that are neither the viewer's background nor the floor grid (H x W booleans)."""
    from viewer.render import BACKGROUND, GRID_TINT

    rgb = image[..., :3].astype(np.int16)
    mask = np.ones(rgb.shape[:2], bool)
    for colour in (BACKGROUND, GRID_TINT):
        ref = np.round(np.array(colour) * 255).astype(np.int16)
        mask &= np.abs(rgb - ref).max(axis=-1) > tolerance
    return mask
