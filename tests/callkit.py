"""Helpers for end-to-end call tests: real `holo signal` and `holo call` processes on loopback."""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from holo.bus import Bus
from tests.conftest import REPO, free_port, free_port_pair

__all__ = [
    "NO_TURNSERVER",
    "BusTap",
    "HoloProcess",
    "start_call",
    "start_signal",
    "start_turn",
    "tone_wav",
    "turn_args",
    "wait_until",
]

NO_TURNSERVER = "coturn's turnserver is not installed (make test installs it as root: apt-get install coturn)"
TURN_USER, TURN_PASS = "holo", "turn-secret"


class HoloProcess:
    """A `holo ...` subprocess whose output goes to a log file; stopped (and reaped) on close."""

    def __init__(
        self, args: list[str], log: Path, env: dict[str, str] | None = None, cpus: str | None = None
    ) -> None:
        self.args = args
        self.log = log
        self._out = open(log, "w")  # noqa: SIM115 - closed in stop()
        pin = ["taskset", "-c", cpus] if cpus else []
        self.proc = subprocess.Popen(
            [*pin, sys.executable, "-m", "holo.cli", *args],
            cwd=REPO,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout_s: float) -> int:
        return self.proc.wait(timeout=timeout_s)

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 15) -> int | None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._out.close()
        return self.proc.returncode


def start_signal(tmp: Path, port: int | None = None, *extra: str) -> tuple[HoloProcess, str]:
    port = port or free_port()
    proc = HoloProcess(
        ["signal", "--host", "127.0.0.1", "--port", str(port), *extra], tmp / f"signal-{port}.log"
    )
    url = f"ws://127.0.0.1:{port}/ws"
    wait_until(lambda: "serving" in proc.text() or proc.proc.poll() is not None, 20, "signaling server start")
    assert proc.proc.poll() is None, proc.text()
    return proc, url


def start_call(
    tmp: Path,
    name: str,
    url: str,
    *extra: str,
    room: str = "room1",
    token: str = "secret-token",
    bus: str | None = None,
    log_suffix: str = "",
    cpus: str | None = None,
) -> tuple[HoloProcess, str]:
    bus = bus or f"tcp://127.0.0.1:{free_port_pair()}"
    args = [
        "call",
        room,
        "-v",
        "--signal",
        url,
        "--token",
        token,
        "--participant",
        name,
        "--ice-address",
        "127.0.0.1",
        "--bus",
        bus,
        *extra,
    ]
    return HoloProcess(args, tmp / f"call-{name}{log_suffix}.log", cpus=cpus), bus


def start_turn(tmp: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    """A coturn TURN server on 127.0.0.1 (log in ``tmp/turn.log``) and its port; None without coturn.

    Stop it with ``terminate()`` and ``wait()``.
    """
    exe = shutil.which("turnserver")
    if exe is None:
        return None
    port = free_port()
    relay = free_port()
    with open(tmp / "turn.log", "w") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [
                exe,
                "-n",
                "--listening-ip=127.0.0.1",
                f"--listening-port={port}",
                "--relay-ip=127.0.0.1",
                f"--min-port={relay}",
                f"--max-port={relay + 50}",
                "--lt-cred-mech",
                f"--user={TURN_USER}:{TURN_PASS}",
                "--realm=holo.test",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--allow-loopback-peers",
                "--simple-log",
                "--log-file=stdout",
                f"--pidfile={tmp / 'turn.pid'}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def listening() -> bool:
        if proc.poll() is not None:
            return True
        with socket.socket() as s:  # coturn also listens on TCP at the same port
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until(listening, 15, "the TURN server to listen")
        assert proc.poll() is None, (tmp / "turn.log").read_text()
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    return proc, port


def turn_args(port: int) -> list[str]:
    """``holo call`` options that send everything through the TURN server at 127.0.0.1:``port``."""
    return [
        "--turn",
        f"turn:127.0.0.1:{port}",
        "--turn-user",
        TURN_USER,
        "--turn-pass",
        TURN_PASS,
        "--ice-policy",
        "relay",
    ]


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def tone_wav(path: Path, freq_hz: float = 440.0, seconds: float = 2.0, rate: int = 48000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.4 * 32767 * np.sin(2 * math.pi * freq_hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


class BusTap:
    """Collects (topic, payload, arrival time) from a bus in a background thread."""

    def __init__(self, address: str, prefixes: list[str]) -> None:
        self.bus = Bus(address, serve=True)
        self.sub = self.bus.subscriber(prefixes)
        self.messages: list[tuple[str, bytes, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self.sub.recv(timeout_s=0.1)
            if msg is not None:
                self.messages.append((msg[0], msg[1], time.monotonic()))

    def topic(self, name: str) -> list[tuple[bytes, float]]:
        return [(payload, t) for topic, payload, t in list(self.messages) if topic == name]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.bus.close()
