"""Recording sessions (issue 8): real `holo record` / `holo play` processes on real buses, real MCAP.

A module-scoped session records tests/record_feed.py — real packets made from the shared
kinect_five_people frame and the synthetic performer (with skeletons), a tone as voice, stats —
published at 30 fps by a separate process. The tests then check it byte for byte against what was
sent, replay it onto a second bus, read it with the mcap library alone, damage copies of it, and
export it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from holo.bus import Bus
from holo.codec.packet import Packet
from holo.errors import RecordingError
from holo.record import Recorder, RecordingReader, iter_replay_packets, summarize
from holo.record.play import split_replay_spec
from holo.record.schemas import PacketHeader
from tests.callkit import BusTap, wait_until
from tests.conftest import FIVE_PEOPLE, REPO, free_port_pair, need

CLI = [sys.executable, "-c", "import sys; from holo.record.cli import main; sys.exit(main())"]
FEED_SECONDS = 3.0


class Proc:
    """A subprocess logging to a file, in its own session; stopped and reaped on stop()."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self._out = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, cwd=REPO, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout_s: float) -> int:
        code = self.proc.wait(timeout=timeout_s)
        self._out.close()
        return code

    def signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._out.close()


def record_proc(path: Path, bus: str, *extra: str) -> Proc:
    return Proc([*CLI, "record", str(path), "--bus", bus, *extra], path.with_suffix(".log"))


def feed_proc(bus: str, log: Path, *extra: str) -> Proc:
    return Proc([sys.executable, "-m", "tests.record_feed", "--bus", bus, *extra], log)


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def new_bus() -> str:
    return f"tcp://127.0.0.1:{free_port_pair()}"


@dataclass(frozen=True)
class Session:
    path: Path
    manifest: dict[str, dict[str, object]]
    tmp: Path


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    need(FIVE_PEOPLE)
    tmp = tmp_path_factory.mktemp("session")
    bus = new_bus()
    path = tmp / "session.mcap"
    calibration = tmp / "calibration.json"
    calibration.write_text(json.dumps({"cameras": {"sim": {"world_from_camera": np.eye(4).tolist()}}}))
    rec = record_proc(path, bus, "--note", "two people and a tone", "--calibration", str(calibration))
    feed = feed_proc(
        bus, tmp / "feed.log", "--seconds", str(FEED_SECONDS), "--manifest", str(tmp / "manifest.json")
    )
    try:
        wait_until(lambda: "recording bus" in rec.text() or rec.proc.poll() is not None, 15, "the recorder")
        assert rec.proc.poll() is None, rec.text()
        assert feed.wait(60) == 0, feed.text()
        time.sleep(0.3)
        rec.signal(signal.SIGTERM)
        assert rec.wait(20) == 0, rec.text()
    finally:
        rec.stop()
        feed.stop()
    assert "MB per minute" in rec.text(), rec.text()
    return Session(path, json.loads((tmp / "manifest.json").read_text()), tmp)


Recorded = list[tuple[str, int, bytes]]  # (topic, log_time_ns, data) of each message, in file order


def recorded(path: Path) -> Recorded:
    with RecordingReader(str(path)) as reader:
        return [(m.topic, m.log_time_ns, m.data) for m in reader.messages()]


@pytest.fixture(scope="module")
def session_messages(session: Session) -> Recorded:
    """``recorded(session.path)``, read once for the module (tests must not change it)."""
    return recorded(session.path)


# -- recording and replay -------------------------------------------------------------------------


def test_recording_holds_exactly_what_was_sent(session: Session, session_messages: Recorded) -> None:
    import hashlib

    by_topic: dict[str, list[bytes]] = {}
    for topic, _, data in session_messages:
        by_topic.setdefault(topic, []).append(data)
    assert set(by_topic) == set(session.manifest)
    for topic, expected in session.manifest.items():
        digest = hashlib.sha256(b"".join(by_topic[topic])).hexdigest()
        assert (len(by_topic[topic]), digest) == (expected["count"], expected["sha256"]), topic
    assert len(by_topic["holo/ana/cloud"]) >= 85 and len(by_topic["holo/ana/audio"]) >= 140


def test_round_trip_plays_identical_bytes_with_recorded_timing(
    session: Session, session_messages: Recorded
) -> None:
    messages = session_messages
    bus = new_bus()
    tap = BusTap(bus, ["holo/"])
    try:
        time.sleep(0.3)
        r = run_cli("play", str(session.path), "--bus", bus, timeout=40)
        assert r.returncode == 0, r.stderr
        time.sleep(0.3)
    finally:
        tap.close()
    assert f"played {len(messages)} messages" in r.stdout
    for topic in {t for t, _, _ in messages}:
        want = [(t_ns, data) for t, t_ns, data in messages if t == topic]
        got = tap.topic(topic)
        assert [d for d, _ in got] == [d for _, d in want], f"{topic}: played bytes differ"
        if topic.endswith("/cloud"):
            recorded_gaps_ms = np.diff([t for t, _ in want]) / 1e6
            played_gaps_ms = np.diff([t for _, t in got]) * 1e3
            error_ms = np.abs(played_gaps_ms - recorded_gaps_ms)
            p95 = np.percentile(error_ms, 95)
            print(f"{topic}: timing error p50 {np.median(error_ms):.2f} ms, p95 {p95:.2f} ms")
            assert p95 <= 5.0, f"{topic}: timing error p95 {p95:.2f} ms"


def test_mcap_library_reads_the_file_without_holo(session: Session) -> None:
    script = f"""
import json, sys
from mcap.reader import make_reader
with open({str(session.path)!r}, "rb") as f:
    reader = make_reader(f)
    summary = reader.get_summary()
    counts = {{}}
    schemas = {{}}
    for schema, channel, message in reader.iter_messages():
        counts[channel.topic] = counts.get(channel.topic, 0) + 1
        schemas[channel.topic] = [schema.name if schema else "", channel.message_encoding]
    metadata = {{m.name: dict(m.metadata) for m in reader.iter_metadata()}}
    attachments = [(a.name, a.media_type) for a in reader.iter_attachments()]
print(json.dumps({{"counts": counts, "schemas": schemas, "metadata": metadata, "attachments": attachments,
    "chunks": len(summary.chunk_indexes), "holo_imported": any(m.startswith("holo") for m in sys.modules)}}))
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert not out["holo_imported"]
    assert {t: c for t, c in out["counts"].items()} == {t: m["count"] for t, m in session.manifest.items()}
    assert out["schemas"]["holo/ben/cloud"] == ["holo.packet", "holo-packet"]
    assert out["schemas"]["holo/ana/audio"] == ["holo.audio", "holo-audio"]
    assert out["schemas"]["holo/ana/stats"] == ["holo.stats", "json"]
    assert out["metadata"]["holo.session"]["note"] == "two people and a tone"
    assert json.loads(out["metadata"]["holo.session.end"]["participants"]) == ["ana", "ben"]
    assert out["attachments"] == [["calibration.json", "application/json"]]
    assert out["chunks"] >= 5  # closed at least every half second


def test_info_summarises_the_session(session: Session) -> None:
    r = run_cli("info", str(session.path))
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert "complete" in text and "two people and a tone" in text and "per minute" in text
    assert "calibration.json (application/json" in text
    r = run_cli("info", str(session.path), "--json")
    info = json.loads(r.stdout)
    people = {p["name"]: p for p in info["participants"]}
    assert set(people) == {"ana", "ben"}
    assert people["ana"]["frames"] == session.manifest["holo/ana/cloud"]["count"]
    assert (
        people["ana"]["skeleton_frames"] == people["ana"]["frames"] and people["ben"]["skeleton_frames"] == 0
    )
    assert 28 < people["ben"]["fps"] < 32 and people["ben"]["codecs"] == ["holo"]
    assert people["ana"]["latency_p50_ms"] is not None and people["ana"]["clock_offset_ms"] == 1.5
    assert people["ana"]["audio_s"] == pytest.approx(session.manifest["holo/ana/audio"]["count"] * 0.02)
    assert info["bytes_per_minute"] > 0 and info["damage"] == []
    assert FEED_SECONDS - 0.3 < info["duration_s"] < FEED_SECONDS + 0.5


def test_iter_replay_packets_restamps_with_valid_crc(session: Session, session_messages: Recorded) -> None:
    start_ns = time.time_ns()
    t0 = time.monotonic()
    packets = []
    for data in iter_replay_packets(str(session.path), "ben", speed=2.0):
        packets.append(Packet.parse(data))  # the CRC is checked here
    elapsed = time.monotonic() - t0
    assert [p.sequence for p in packets] == list(range(session.manifest["holo/ben/cloud"]["count"]))
    assert all(p.participant == "ben" for p in packets)
    times = [p.capture_time_ns for p in packets]
    assert times[0] >= start_ns and times == sorted(times)
    assert FEED_SECONDS / 2 - 0.3 < elapsed < FEED_SECONDS / 2 + 0.5  # recorded pace at 2x
    first = next(iter_replay_packets(str(session.path), speed=10.0, rename="zoe", restamp=True))
    assert Packet.parse(first).participant == "zoe"  # None picks the first participant recorded
    original = next(iter_replay_packets(str(session.path), "ana", restamp=False))
    assert original == next(d for t, _, d in session_messages if t == "holo/ana/cloud")
    looped = []
    for data in iter_replay_packets(str(session.path), "ana", speed=20.0, loop=True):
        looped.append(Packet.parse(data).sequence)
        if len(looped) == 2 * len(packets) + 5:
            break
    assert looped == list(range(len(looped)))
    assert split_replay_spec(f"{session.path}:ana") == (str(session.path), "ana")
    assert split_replay_spec(str(session.path)) == (str(session.path), None)
    with pytest.raises(
        RecordingError, match="holds no clouds of participant 'nobody' \\(it holds: ana, ben\\)"
    ):
        next(iter_replay_packets(str(session.path), "nobody"))


def test_play_window_and_loop_in_process(session: Session) -> None:
    from holo.record.play import play

    bus = new_bus()
    tap = BusTap(bus, ["holo/ben/cloud"])
    try:
        report = play(str(session.path), bus_address=bus, from_s=1.0, to_s=2.0, speed=4.0, settle_s=0.3)
        time.sleep(0.2)
    finally:
        tap.close()
    got = tap.topic("holo/ben/cloud")
    assert 25 <= len(got) <= 35 and report.passes == 1
    seqs = [PacketHeader.peek(d).sequence for d, _ in got]  # type: ignore[union-attr]
    assert 28 <= seqs[0] <= 32 and seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    tap = BusTap(bus := new_bus(), ["holo/ana/cloud"])
    try:
        play(str(session.path), bus_address=bus, to_s=0.5, speed=10.0, restamp=True, settle_s=0.3)
        time.sleep(0.2)
    finally:
        tap.close()
    restamped = [Packet.parse(d) for d, _ in tap.topic("holo/ana/cloud")]
    assert [p.sequence for p in restamped] == list(range(len(restamped))) and len(restamped) >= 14
    deadline = time.monotonic() + 1.5
    with Bus(new_bus()) as b:
        report = play(
            str(session.path), bus=b, to_s=0.5, speed=10.0, loop=True, settle_s=0.0,
            stop=lambda: time.monotonic() > deadline,
        )  # fmt: skip
    assert report.passes >= 3 and report.messages > 3 * 20


# -- crash safety and damage -------------------------------------------------------------------------


def test_kill9_loses_at_most_a_second(tmp_path: Path) -> None:
    need(FIVE_PEOPLE)
    bus = new_bus()
    path = tmp_path / "killed.mcap"
    rec = record_proc(path, bus)
    feed = feed_proc(bus, tmp_path / "feed.log", "--seconds", "4", "--start-delay", "0.3")
    try:
        wait_until(lambda: "recording bus" in rec.text(), 15, "the recorder")
        wait_until(lambda: "ready" in feed.text(), 30, "the feed")
        time.sleep(0.3 + 2.6)
        killed_ns = time.time_ns()
        rec.signal(signal.SIGKILL)
        rec.proc.wait(10)
    finally:
        rec.stop()
        feed.stop()
    with pytest.raises(RecordingError, match="is damaged: the file ends"):
        recorded(path)
    with RecordingReader(str(path), recover=True) as reader:
        messages = list(reader.messages())
        assert reader.damage and not reader.complete
    last_ns = max(m.log_time_ns for m in messages)
    lost_s = (killed_ns - last_ns) / 1e9
    print(f"kill -9 lost the last {lost_s:.3f} s ({len(messages)} messages recovered)")
    assert lost_s <= 1.0
    assert (last_ns - messages[0].log_time_ns) / 1e9 >= 2.6 - 1.0
    r = run_cli("info", str(path))
    assert r.returncode == 0, r.stderr
    assert "readable up to" in r.stdout and f"bytes of {path.stat().st_size:,}" in r.stdout


def _chunk_offsets(path: Path) -> list[tuple[int, int]]:
    from mcap.reader import make_reader

    with open(path, "rb") as f:
        summary = make_reader(f).get_summary()
    assert summary is not None
    return [(c.chunk_start_offset, c.chunk_length) for c in summary.chunk_indexes]


def test_truncated_files_give_clear_errors_and_recover_a_prefix(
    session: Session, session_messages: Recorded, tmp_path: Path
) -> None:
    data = session.path.read_bytes()
    full = session_messages
    chunks = _chunk_offsets(session.path)
    cuts = [
        4,
        8,
        30,
        chunks[0][0] + 40,
        chunks[2][0] + chunks[2][1] // 2,
        chunks[-1][0],
        len(data) // 2,
        len(data) - 30,
    ]
    for cut in cuts:
        path = tmp_path / f"cut-{cut}.mcap"
        path.write_bytes(data[:cut])
        if cut < 8:
            with pytest.raises(RecordingError, match="empty or cut off within its first 8 bytes"):
                RecordingReader(str(path))
            continue
        with pytest.raises(RecordingError, match=rf"{path} is damaged: the file ends .* `holo info`"):
            recorded(path)
        with RecordingReader(str(path), recover=True) as reader:
            got = [(m.topic, m.log_time_ns, m.data) for m in reader.messages()]
            assert got == full[: len(got)], f"cut at {cut}: not a prefix"
            assert reader.damage[-1].fatal and reader.readable_bytes <= cut
        summary = summarize(str(path))
        assert summary.damage and summary.readable_bytes <= cut and summary.file_bytes == cut
    mid = chunks[2][0] + chunks[2][1] // 2
    r = run_cli("info", str(tmp_path / f"cut-{mid}.mcap"))
    assert r.returncode == 0, r.stderr
    assert "the file ends inside a chunk at byte" in r.stdout and "s are lost" in r.stdout
    assert f"bytes of {mid:,})" in r.stdout


def test_flipped_bytes_are_detected_and_skipped(
    session: Session, session_messages: Recorded, tmp_path: Path
) -> None:
    data = session.path.read_bytes()
    full = session_messages
    for i, (offset, length) in enumerate(_chunk_offsets(session.path)[1:4]):
        broken = bytearray(data)
        broken[offset + length // 2] ^= 0x40
        path = tmp_path / f"flip-{i}.mcap"
        path.write_bytes(bytes(broken))
        with pytest.raises(RecordingError, match=r"is damaged: the chunk at byte [\d,]+ is corrupt"):
            recorded(path)
        with RecordingReader(str(path), recover=True) as reader:
            got = list(reader.messages())
            assert 0 < len(got) < len(full)
            assert not reader.damage[0].fatal and reader.damage[0].lost_s is not None
            assert got[-1].log_time_ns > full[-1][1] - 0.5e9  # reading went on past the bad chunk
    broken = bytearray(data)
    broken[1] ^= 0xFF
    (tmp_path / "magic.mcap").write_bytes(bytes(broken))
    with pytest.raises(RecordingError, match="is not an MCAP recording"):
        RecordingReader(str(tmp_path / "magic.mcap"))


def test_not_mcap_and_missing_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.mcap"
    text.write_text("these are not the recordings you are looking for\n")
    r = run_cli("info", str(text))
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"holo info: error: {text} is not an MCAP recording (it does not start with MCAP's magic bytes)"
    )
    r = run_cli("play", str(tmp_path / "absent.mcap"))
    assert r.returncode == 2 and "the recording" in r.stderr and "does not exist" in r.stderr


# -- unwritable destinations --------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(mountpoint: Path, options: str) -> Iterator[Path]:
    mountpoint.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mountpoint)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip() or 'mount failed'}); needs root")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_unwritable_paths_fail_before_recording(tmp_path: Path) -> None:
    bus = new_bus()
    cases = {
        tmp_path / "missing" / "x.mcap": "the directory .*missing does not exist",
        tmp_path: "it is a directory",
    }
    existing = tmp_path / "existing.mcap"
    existing.write_bytes(b"precious")
    cases[existing] = r"it already exists \(pass --overwrite"
    for path, message in cases.items():
        with pytest.raises(RecordingError, match=f"cannot record to {path}: {message}"):
            Recorder(str(path), bus).start()
    assert existing.read_bytes() == b"precious"
    r = run_cli("record", str(tmp_path / "missing" / "x.mcap"), "--bus", bus, "--seconds", "1")
    assert r.returncode == 2 and "does not exist" in r.stderr, r.stderr
    with (
        tmpfs(tmp_path / "ro", "ro,size=1M") as ro,
        pytest.raises(RecordingError, match="is on a read-only file system"),
    ):
        Recorder(str(ro / "x.mcap"), bus).start()


def test_disk_full_stops_with_a_clear_error_and_a_readable_file(tmp_path: Path) -> None:
    need(FIVE_PEOPLE)
    with tmpfs(tmp_path / "small", "size=3M") as small:  # about two chunks of this feed
        bus = new_bus()
        path = small / "full.mcap"
        log = tmp_path / "rec.log"  # not on the small disk
        rec = Proc([*CLI, "record", str(path), "--bus", bus], log)
        feed = feed_proc(bus, tmp_path / "feed.log", "--seconds", "6", "--participants", "ben")
        try:
            wait_until(lambda: "recording bus" in rec.text(), 15, "the recorder")
            code = rec.wait(30)
        finally:
            rec.stop()
            feed.stop()
        assert code == 2, rec.text()
        assert f"holo record: error: the disk holding {path} is full; recording stopped after" in rec.text()
        with RecordingReader(str(path), recover=True) as reader:
            messages = list(reader.messages())
            assert len(messages) >= 15  # at least one whole chunk
            assert reader.damage[0].reason.startswith("the file ends at byte")  # cut back to a whole record


# -- in-process use (holo call --record) ----------------------------------------------------------------


def test_recorder_in_process_with_seconds(tmp_path: Path) -> None:
    bus_address = new_bus()
    path = tmp_path / "inproc.mcap"
    with Bus(bus_address) as bus:
        pub = bus.publisher()
        rec = Recorder(str(path), bus=bus, note="in-process", seconds=1.5, chunk_period_s=0.2)
        rec.start()
        time.sleep(0.3)
        stop = threading.Event()

        def publish() -> None:
            i = 0
            while not stop.is_set():
                pub.send(
                    "holo/ana/presence", json.dumps({"present": True, "time_ns": time.time_ns()}).encode()
                )
                pub.send(
                    "holo/headpose",
                    json.dumps({"position": [0, 1.6, 0], "orientation": [0, 0, 0, 1]}).encode(),
                )
                pub.send("holo/lab/marker", b"\x00\x01binary %d" % i)
                i += 1
                time.sleep(0.02)

        t = threading.Thread(target=publish, daemon=True)
        t.start()
        assert rec.wait(5), "the recorder did not stop after its seconds"
        stop.set()
        t.join()
        report = rec.stop()
    assert report.complete and report.messages > 100 and "1.5 s were up" in report.stop_reason
    with RecordingReader(str(path)) as reader:
        kinds = {m.topic: (m.kind, m.participant) for m in reader.messages()}
        assert reader.complete
        assert reader.metadata["holo.session"]["note"] == "in-process"
        assert reader.metadata["holo.session.end"]["stop_reason"] == "its 1.5 s were up"
    assert kinds == {
        "holo/ana/presence": ("presence", "ana"),
        "holo/headpose": ("headpose", ""),
        "holo/lab/marker": ("marker", "lab"),
    }


# -- export -----------------------------------------------------------------------------------------------


def test_exports(session: Session, tmp_path: Path) -> None:
    from mcap.reader import make_reader

    from holo.ply import read_ply

    out = tmp_path / "out"
    r = run_cli(
        "export", str(session.path), "--ply", str(out / "ply"), "--skeleton-csv", str(out / "skeleton.csv"),
        "--audio", str(out / "audio"), "--foxglove", str(out / "foxglove.mcap"), timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    frames = {p: session.manifest[f"holo/{p}/cloud"]["count"] for p in ("ana", "ben")}
    for p, n in frames.items():
        files = sorted((out / "ply" / p).glob("*.ply"))
        assert len(files) == n
        cloud = read_ply(str(files[-1]))
        assert cloud.participant == p and cloud.frame == "world" and len(cloud) > 10_000
        assert -0.2 < np.percentile(cloud.points_m[:, 1], 2) < 0.5  # standing on the floor (y up)
    rows = (out / "skeleton.csv").read_text().splitlines()
    assert rows[0] == "time_ns,participant,sequence,joint_index,joint_name,x_m,y_m,z_m,visibility,frame"
    assert len(rows) - 1 == frames["ana"] * 33
    assert rows[1].split(",")[1:5] == ["ana", "0", "0", "nose"] and rows[1].endswith(",world")
    with wave.open(str(out / "audio" / "ana.wav"), "rb") as w:
        seconds = w.getnframes() / w.getframerate()
    assert seconds == pytest.approx(session.manifest["holo/ana/audio"]["count"] * 0.02, abs=0.05)
    index = json.loads((out / "audio" / "audio.json").read_text())
    assert index["ana"]["sample_rate"] == 48000 and index["ana"]["silence_inserted_s"] == 0
    with open(out / "foxglove.mcap", "rb") as f:
        reader = make_reader(f)
        schemas: dict[str, str] = {}
        counts: dict[str, int] = {}
        first: dict[str, dict[str, object]] = {}
        for schema, channel, message in reader.iter_messages():
            assert schema is not None and channel.message_encoding == "json"
            schemas[channel.topic] = schema.name
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            first.setdefault(channel.topic, json.loads(message.data))
    assert schemas == {
        "/holo/ana/cloud": "foxglove.PointCloud",
        "/holo/ben/cloud": "foxglove.PointCloud",
        "/holo/ana/skeleton": "foxglove.SceneUpdate",
        "/tf": "foxglove.FrameTransform",
    }
    assert counts["/holo/ben/cloud"] == frames["ben"] and counts["/holo/ana/skeleton"] == frames["ana"]
    cloud_msg = first["/holo/ben/cloud"]
    assert cloud_msg["point_stride"] == 16 and cloud_msg["frame_id"] == "world"
    import base64

    assert len(base64.b64decode(cloud_msg["data"])) % 16 == 0  # type: ignore[arg-type]
    entity = first["/holo/ana/skeleton"]["entities"][0]  # type: ignore[index]
    assert entity["id"] == "ana/skeleton" and len(entity["spheres"]) > 20 and entity["lines"][0]["type"] == 2
    r = run_cli("export", str(session.path), "--skeleton-csv", str(out / "skeleton.csv"))
    assert r.returncode == 2 and "already exists; pass --overwrite" in r.stderr
    r = run_cli("export", str(session.path))
    assert r.returncode == 2 and "nothing to export" in r.stderr
    shutil.rmtree(out)


# -- hostile bytes ----------------------------------------------------------------------------------------


def small_recording(path: Path) -> None:
    with Bus(new_bus()) as bus:
        pub = bus.publisher()
        rec = Recorder(str(path), bus=bus, note="small", chunk_period_s=0.05)
        rec.start()
        time.sleep(0.3)
        for i in range(40):
            pub.send("holo/ana/stats", json.dumps({"latency_p50_ms": i, "time_ns": time.time_ns()}).encode())
            pub.send("holo/ana/audio", bytes(18) + bytes(64))
            time.sleep(0.01)
        time.sleep(0.2)
        rec.stop()


def test_every_prefix_and_flipped_byte_is_refused_with_a_sentence(tmp_path: Path) -> None:
    path = tmp_path / "small.mcap"
    small_recording(path)
    data = path.read_bytes()
    full = recorded(path)
    chunks = len(_chunk_offsets(path))
    assert len(full) >= 40 and chunks >= 3, f"{len(full)} messages in {chunks} chunks"
    broken = tmp_path / "broken.mcap"
    for cut in range(0, len(data), 5):
        broken.write_bytes(data[:cut])
        with pytest.raises(RecordingError):
            recorded(broken)
        try:
            with RecordingReader(str(broken), recover=True) as reader:
                got = [(m.topic, m.log_time_ns, m.data) for m in reader.messages()]
        except RecordingError as exc:
            assert cut < 8 and "cut off within its first 8 bytes" in str(exc)
            continue
        assert got == full[: len(got)] and reader.damage
    for at in range(0, len(data), 3):
        flipped = bytearray(data)
        flipped[at] ^= 0x10
        broken.write_bytes(bytes(flipped))
        with pytest.raises(RecordingError):  # every byte is covered by a CRC or checked framing
            recorded(broken)
        with (
            contextlib.suppress(RecordingError),  # the magic: not MCAP at all
            RecordingReader(str(broken), recover=True) as reader,
        ):
            list(reader.messages())
            assert reader.damage
