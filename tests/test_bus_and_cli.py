"""`holo capture` end to end: real processes, real PLY files, real ZMQ bus."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from holo.bus import Bus, bus_endpoints, cloud_topic
from holo.codec import StreamDecoder
from holo.errors import ConfigError
from holo.ply import read_ply, write_ply
from holo.sources import open_source
from tests.conftest import KINECT_INTRINSICS, REPO, free_port_pair, run_holo


def test_capture_synthetic_writes_ply_files(tmp_path: Path) -> None:
    out = tmp_path / "clouds"
    r = run_holo("capture", "--count", "3", "--out", str(out), "--participant", "ana")
    assert r.returncode == 0, r.stderr
    files = sorted(out.glob("*.ply"))
    assert [f.name for f in files] == ["frame_000000.ply", "frame_000001.ply", "frame_000002.ply"]
    cloud = read_ply(str(files[1]))
    assert cloud.participant == "ana" and cloud.sequence == 1 and cloud.frame == "camera"
    assert 15_000 < len(cloud) < 60_000
    assert 1.5 < np.median(cloud.points_m[:, 2]) < 3.5  # metres, in front of the camera
    assert "3 frame(s)" in r.stdout


def test_capture_five_people_in_world_frame(five_people: Path, tmp_path: Path) -> None:
    r = run_holo(
        "capture",
        "--source",
        f"rgbd:{five_people}",
        "--intrinsics",
        KINECT_INTRINSICS,
        "--out",
        str(tmp_path),
        "--frame",
        "world",
    )
    assert r.returncode == 0, r.stderr
    cloud = read_ply(str(tmp_path / "frame_000000.ply"))
    assert cloud.frame == "world"
    y = cloud.points_m[:, 1]
    assert -0.05 < np.percentile(y, 1) < 0.15 and 1.4 < np.percentile(y, 99.9) < 2.0  # standing on y = 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "pcd:/no/such/file.pcd"], "pcd source: /no/such/file.pcd does not exist"),
        (["--source", "warp:drive"], "unknown source kind 'warp'"),
        (["--source", "synthetic", "--intrinsics", "1,1,1,1"], "field of view"),
        (["--count", "0"], "--count must be at least 1"),
        (["--depth-range", "3,1"], "near < far"),
        (["--source", "realsense"], "no Intel RealSense camera is connected"),
    ],
)
def test_capture_bad_input_is_one_clear_sentence(args: list[str], message: str) -> None:
    r = run_holo("capture", *args, "--count", "1") if "--count" not in args else run_holo("capture", *args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_capture_help_explains_units() -> None:
    r = run_holo("capture", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    for word in ("metres", "pixels", "frames per second", "--publish", "--out", "--count"):
        assert word in text


def test_ply_round_trip(tmp_path: Path) -> None:
    with open_source("synthetic") as src:
        frame = next(iter(src))
    from holo.capture import CapturePipeline

    cloud = CapturePipeline().process(frame)
    path = str(tmp_path / "x.ply")
    write_ply(path, cloud)
    back = read_ply(path)
    np.testing.assert_array_equal(back.points_m, cloud.points_m)
    np.testing.assert_array_equal(back.colors, cloud.colors)
    assert back.capture_time_ns == cloud.capture_time_ns
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) - 100])
    with pytest.raises(Exception, match="truncated"):
        read_ply(path)


def test_bus_address_forms() -> None:
    assert bus_endpoints("tcp://127.0.0.1:7000") == ("tcp://127.0.0.1:7000", "tcp://127.0.0.1:7001")
    assert bus_endpoints("ipc:///tmp/x") == ("ipc:///tmp/x.in", "ipc:///tmp/x.out")
    with pytest.raises(ConfigError, match="tcp://HOST:PORT"):
        bus_endpoints("udp://nope")


def test_capture_publishes_packets_a_subscriber_decodes() -> None:
    address = f"tcp://127.0.0.1:{free_port_pair()}"
    with Bus(address) as bus:
        bus.wait_ready()
        sub = bus.subscriber([cloud_topic("bo")])
        time.sleep(0.2)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "holo.cli",
                "capture",
                "--publish",
                address,
                "--participant",
                "bo",
                "--count",
                "40",
                "--fps",
                "20",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            decoder = StreamDecoder()
            got = []
            deadline = time.monotonic() + 30
            while len(got) < 5 and time.monotonic() < deadline:
                msg = sub.recv(timeout_s=1.0)
                if msg:
                    got.append(decoder.decode(msg[1]))
                    assert msg[0] == "holo/bo/cloud"
        finally:
            _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert len(got) >= 5
    seqs = [c.sequence for c in got]
    assert seqs == sorted(seqs)
    assert all(c.participant == "bo" and len(c) > 10_000 for c in got)


def test_bus_survives_its_forwarder_process_exiting() -> None:
    """The process that serves the bus exits; another holder takes over and messages flow again."""
    address = f"tcp://127.0.0.1:{free_port_pair()}"
    first = subprocess.Popen(
        [sys.executable, "-m", "holo.cli", "bus", "--bus", address],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(1.0)
        with Bus(address) as bus:  # its guard waits while `first` serves
            assert bus.forwarder is not None and not bus.forwarder.serving
            first.terminate()
            first.wait(timeout=10)
            assert bus.forwarder.wait_serving(5.0)
            pub, sub = bus.publisher(), bus.subscriber(["holo/t"])
            deadline = time.monotonic() + 10
            received = None
            while received is None and time.monotonic() < deadline:
                pub.send("holo/t/x", b"hello")
                received = sub.recv(timeout_s=0.2)
            assert received == ("holo/t/x", b"hello")
    finally:
        if first.poll() is None:
            first.kill()
