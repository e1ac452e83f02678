"""``holo demo``: a complete 3D call on this machine, no camera needed.

It starts, as separate processes joined over loopback exactly as two real users' machines would be:

- a signaling server (``holo signal``) on a free port;
- **alice**: ``holo call`` sending the built-in synthetic performer, with her own local bus;
- **bob**: ``holo call`` sending a webcam if one is plugged in, else a second performer (another
  seed: another size, clothes and dance);
- a recorder (``holo record``) on alice's bus: the session goes to ``OUT/session.mcap``;
- the viewer on alice's bus, showing bob (and stats): a window when there is a display; otherwise
  it says so and renders snapshots to ``OUT/snapshots/`` instead.

Ctrl-C (or ``--seconds``, or ``--frames`` in headless mode) ends everything cleanly. ``--headless``
forces snapshots even with a display — that is what tests and scripted checks use.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from holo.errors import ConfigError, HoloError
from holo.ports import free_port, free_port_pair

__all__ = ["add_demo_arguments", "run_demo"]

logger = logging.getLogger(__name__)


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--headless",
        action="store_true",
        help="render snapshots to OUT/snapshots instead of opening a window",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=None,
        metavar="N",
        help="end after N frames of bob have been shown (default: run until Ctrl-C or --seconds)",
    )
    p.add_argument("--seconds", type=float, default=None, metavar="S", help="end after S seconds")
    p.add_argument(
        "--out",
        default="demo-out",
        metavar="DIR",
        help="where snapshots, the recording and logs go (default demo-out)",
    )
    p.add_argument("--fps", type=float, default=30.0, help="frames per second each side sends (default 30)")
    p.add_argument(
        "--size", default="960x540", metavar="WxH", help="viewer window or snapshot size (default 960x540)"
    )
    p.add_argument("--no-record", action="store_true", help="do not record the session")
    p.add_argument(
        "--no-webcam", action="store_true", help="never use a webcam for bob, even if one is plugged in"
    )


def _webcam_present() -> bool:
    import glob

    import cv2

    if sys.platform.startswith("linux") and not glob.glob("/dev/video*"):
        return False  # no video device at all: do not even ask OpenCV (it complains on stderr)
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # type: ignore[attr-defined]
    cap = cv2.VideoCapture(0)
    try:
        return bool(cap.isOpened())
    finally:
        cap.release()


class _Processes:
    """The demo's children: started in their own process groups, stopped gently, then firmly."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - owned by the child, closed with it
        proc = subprocess.Popen(
            [sys.executable, "-m", "holo.cli", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.children.append((name, proc))
        return proc

    def check(self) -> None:
        for name, proc in self.children:
            if proc.poll() is not None and proc.returncode not in (0, 130, -signal.SIGTERM):
                tail = (self.logs / f"{name}.log").read_text(errors="replace").strip().splitlines()[-3:]
                raise HoloError(
                    f"the demo's {name} stopped unexpectedly (status {proc.returncode}): {' / '.join(tail)}"
                )

    def stop(self) -> None:
        for _, proc in reversed(self.children):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + 15
        for _, proc in reversed(self.children):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def run_demo(args: argparse.Namespace) -> int:
    from holo.cli import parse_size

    if args.frames is not None and args.frames < 1:
        raise ConfigError("--frames must be at least 1")
    width, height = parse_size(args.size)
    out = Path(args.out)
    logs = out / "logs"
    try:
        logs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
    display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    headless = args.headless or not display
    if not display and not args.headless:
        print("holo demo: no display here (DISPLAY is not set): rendering snapshots instead of a window")
    signal_port = free_port()
    bus_alice = f"tcp://127.0.0.1:{free_port_pair()}"
    bus_bob = f"tcp://127.0.0.1:{free_port_pair()}"
    url = f"ws://127.0.0.1:{signal_port}/ws"
    room, token = "demo", "holo-demo-" + os.urandom(6).hex()
    bob_source = "webcam" if not args.no_webcam and _webcam_present() else "synthetic:7"
    common = [
        "--signal",
        url,
        "--token",
        token,
        "--ice-address",
        "127.0.0.1",
        "--fps",
        str(args.fps),
        "--no-audio",
    ]
    procs = _Processes(logs)
    recording = out / "session.mcap"
    snapshots = out / "snapshots"
    shown = 0
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    previous = signal.signal(signal.SIGINT, on_signal), signal.signal(signal.SIGTERM, on_signal)
    try:
        procs.start("signal", "signal", "--host", "127.0.0.1", "--port", str(signal_port))
        time.sleep(0.5)
        # Body tracking only where it makes the hologram (a webcam): two MediaPipe pipelines on a
        # small machine would take the CPU the call needs.
        procs.start(
            "alice",
            "call",
            room,
            *common,
            "--participant",
            "alice",
            "--source",
            "synthetic:0",
            "--body",
            "off",
            "--bus",
            bus_alice,
        )
        bob_body = ["--body", "auto"] if bob_source == "webcam" else ["--body", "off"]
        procs.start(
            "bob",
            "call",
            room,
            *common,
            "--participant",
            "bob",
            "--source",
            bob_source,
            *bob_body,
            "--bus",
            bus_bob,
        )
        if not args.no_record:
            recording.unlink(missing_ok=True)
            procs.start("recorder", "record", str(recording), "--bus", bus_alice, "--note", "holo demo")
        print(f"holo demo: alice ({'synthetic performer'}) calls bob ({bob_source}); logs in {logs}")
        if headless:
            shown = _headless_viewer(args, bus_alice, snapshots, width, height, procs, lambda: stop)
        else:
            viewer = procs.start(
                "viewer", "view", "--bus", bus_alice, "--participant", "alice", "--size", args.size
            )
            t0 = time.monotonic()
            while not stop and viewer.poll() is None:
                procs.check()
                if args.seconds and time.monotonic() - t0 > args.seconds:
                    break
                time.sleep(0.2)
    finally:
        procs.stop()
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
    if headless:
        print(f"holo demo: {shown} frames of bob shown; snapshots in {snapshots}")
    if not args.no_record and recording.exists():
        print(
            f"holo demo: the session is recorded in {recording} (holo info {recording}; holo play {recording})"
        )
    return 0


def _headless_viewer(
    args: argparse.Namespace,
    bus: str,
    snapshots: Path,
    width: int,
    height: int,
    procs: _Processes,
    stopped: object,
) -> int:
    """Render the scene offscreen: a snapshot every second (and the last one), until done."""
    from viewer.app import _write_png, fit_camera, stats_lines
    from viewer.offscreen import Offscreen
    from viewer.scene import BusFeed, Scene

    snapshots.mkdir(parents=True, exist_ok=True)
    scene = Scene(hide={"alice"})
    feed = BusFeed(scene, bus)
    off = Offscreen(width, height)
    shown = 0
    last_version = -1
    saved_at = 0.0
    t0 = time.monotonic()
    deadline = t0 + (args.seconds if args.seconds else float("inf"))
    first_deadline = t0 + 120  # the call must connect within two minutes
    image = None
    try:
        while not stopped() and time.monotonic() < deadline:  # type: ignore[operator]
            procs.check()
            bob = next((p for p, _ in scene.snapshot() if p.name == "bob"), None)
            if bob is None:
                if shown == 0 and time.monotonic() > first_deadline:
                    raise HoloError("bob never appeared: the call did not connect (see the logs)")
                time.sleep(0.05)
                continue
            if bob.version == last_version:
                time.sleep(0.005)
                continue
            last_version = bob.version
            image = off.render(scene, fit_camera(scene, width / height), stats_lines=stats_lines(scene, feed))
            shown += 1
            now = time.monotonic()
            if now - saved_at >= 1.0:
                _write_png(str(snapshots / f"snapshot_{shown:05d}.png"), image)
                saved_at = now
            if args.frames is not None and shown >= args.frames:
                break
        if image is not None:
            _write_png(str(snapshots / "latest.png"), image)
    finally:
        off.release()
        feed.close()
    return shown
