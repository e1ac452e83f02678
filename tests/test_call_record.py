"""Recording from a call and calling with a recording, with real processes: `holo call --record`,
a full disk under a running call, and `holo call --source replay:FILE.mcap:PARTICIPANT`."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from holo.codec import StreamDecoder
from holo.record.reader import RecordingReader, summarize
from tests.callkit import BusTap, start_call, start_signal, wait_until
from tests.test_record import tmpfs

LIGHT = ["--no-audio", "--fps", "15", "--body", "off"]


@pytest.mark.timeout(240)
def test_a_call_records_itself_and_the_recording_calls_again(tmp_path: Path) -> None:
    signal_proc, url = start_signal(tmp_path)
    recording = tmp_path / "call.mcap"
    alice, _ = start_call(tmp_path, "alice", url, *LIGHT, "--seconds", "60", "--record", str(recording))
    bob, bob_bus = start_call(tmp_path, "bob", url, *LIGHT, "--seconds", "60", "--source", "synthetic:7")
    tap = BusTap(bob_bus, ["holo/alice/cloud"])
    try:
        wait_until(lambda: len(tap.topic("holo/alice/cloud")) >= 45, 90, "alice's frames at bob")
    finally:
        for p in (bob, alice):
            p.stop()
        tap.close()
    assert "recorded" in alice.text(), alice.text()[-2000:]
    summary = summarize(str(recording))
    names = {p.name: p for p in summary.participants}
    assert summary.complete and {"alice", "bob"} <= set(names)
    assert names["bob"].frames >= 20  # the remote side, as received
    assert names["alice"].frames >= 20  # and this side, as sent

    # carol calls dave with what bob sent in that call: the recording as a repeatable partner.
    carol, _ = start_call(
        tmp_path, "carol", url, *LIGHT, "--seconds", "60", "--source", f"replay:{recording}:bob", room="room2"
    )
    dave, dave_bus = start_call(tmp_path, "dave", url, *LIGHT, "--seconds", "60", room="room2")
    tap = BusTap(dave_bus, ["holo/carol/cloud"])
    try:
        wait_until(lambda: len(tap.topic("holo/carol/cloud")) >= 30, 90, "the replayed frames at dave")
    finally:
        for p in (dave, carol, signal_proc):
            p.stop()
        tap.close()
    decoder = StreamDecoder()
    clouds = [decoder.decode(p) for p, _ in tap.topic("holo/carol/cloud")[-10:]]
    assert all(c.participant == "carol" for c in clouds)  # renamed to the caller
    assert all(abs(time.time_ns() - c.capture_time_ns) < 120e9 for c in clouds)  # restamped: now, not then
    assert min(len(c.points_m) for c in clouds) > 1000
    assert "Traceback" not in carol.text() + dave.text()


@pytest.mark.timeout(240)
def test_a_full_disk_stops_the_recording_not_the_call(tmp_path: Path) -> None:
    signal_proc, url = start_signal(tmp_path)
    with tmpfs(tmp_path / "small", "size=2M") as small:
        recording = small / "call.mcap"
        alice, _ = start_call(tmp_path, "alice", url, *LIGHT, "--seconds", "120", "--record", str(recording))
        bob, bob_bus = start_call(tmp_path, "bob", url, *LIGHT, "--seconds", "120")
        tap = BusTap(bob_bus, ["holo/alice/cloud"])
        try:
            wait_until(lambda: "recording stopped, the call goes on" in alice.text(), 120, "the disk to fill")
            full_at = time.monotonic()
            time.sleep(4.0)
            after = [t for _, t in tap.topic("holo/alice/cloud") if t > full_at]
        finally:
            for p in (bob, alice, signal_proc):
                p.stop()
            tap.close()
        log = alice.text()
        line = next(x for x in log.splitlines() if "recording stopped, the call goes on" in x)
        print(f"\n{line}\nalice's frames at bob in the 4 s after: {len(after)}")
        assert f"the disk holding {recording} is full" in line
        assert len(after) >= 30  # ~15 fps: the call did not notice
        with RecordingReader(str(recording), recover=True) as reader:
            assert sum(1 for m in reader.messages() if m.kind == "cloud") >= 10  # readable up to the fault
        assert "Traceback" not in log
