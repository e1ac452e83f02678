"""The call under faults, with real processes: a peer killed and restarted, the signaling server
restarted, a lossy link. (A peer sending garbage is in test_call.py; a full disk in test_record.py.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.callkit import NO_TURNSERVER, BusTap, start_call, start_signal, start_turn, turn_args, wait_until
from tests.conftest import free_port

LIGHT = ["--no-audio", "--fps", "15", "--seconds", "120", "--body", "off"]


def presence(tap: BusTap, peer: str) -> list[tuple[bool, float]]:
    return [(bool(json.loads(p)["present"]), t) for p, t in tap.topic(f"holo/{peer}/presence")]


@pytest.mark.timeout(180)
def test_a_peer_killed_and_restarted_is_shown_gone_then_back_within_5_s(tmp_path: Path) -> None:
    signal_proc, url = start_signal(tmp_path)
    alice, alice_bus = start_call(tmp_path, "alice", url, *LIGHT)
    tap = BusTap(alice_bus, ["holo/bob/"])
    bob = bob2 = None
    try:
        bob, _ = start_call(tmp_path, "bob", url, *LIGHT)
        wait_until(lambda: len(tap.topic("holo/bob/cloud")) >= 10, 90, "bob's frames at alice")
        killed_at = time.monotonic()
        bob.kill9()
        wait_until(
            lambda: any(not p for p, t in presence(tap, "bob") if t > killed_at), 30, "alice to see bob gone"
        )
        gone_after = next(t for p, t in presence(tap, "bob") if not p and t > killed_at) - killed_at
        restarted_at = time.monotonic()
        bob2, _ = start_call(tmp_path, "bob", url, *LIGHT, log_suffix="-again")
        # From the moment the new process can call (it has joined the room) to bob's frames again.
        wait_until(lambda: "joined room" in bob2.text(), 60, "the restarted bob to join")
        joined_at = time.monotonic()
        wait_until(
            lambda: any(t > joined_at for _, t in tap.topic("holo/bob/cloud")), 30, "bob's frames again"
        )
        back_at = next(t for _, t in tap.topic("holo/bob/cloud") if t > joined_at)
        back_after, since_restart = back_at - joined_at, back_at - restarted_at
    finally:
        for p in (bob2, bob, alice, signal_proc):
            if p is not None:
                p.stop()
        tap.close()
    print(
        f"\nbob killed: alice saw him gone after {gone_after:.1f} s; back {back_after:.1f} s after he rejoined, "
        f"{since_restart:.1f} s after his process was started again"
    )
    assert back_after < 5.0
    assert since_restart < 10.0  # includes starting Python, MediaPipe-free capture and the codecs
    assert "Traceback" not in alice.text()


@pytest.mark.timeout(180)
def test_the_call_continues_while_the_signaling_server_restarts(tmp_path: Path) -> None:
    port = free_port()
    signal_proc, url = start_signal(tmp_path, port)
    alice, _ = start_call(tmp_path, "alice", url, *LIGHT)
    bob, bob_bus = start_call(tmp_path, "bob", url, *LIGHT)
    tap = BusTap(bob_bus, ["holo/alice/cloud"])
    signal2 = None
    try:
        wait_until(lambda: len(tap.topic("holo/alice/cloud")) >= 10, 90, "alice's frames at bob")
        signal_proc.stop()
        stopped_at = time.monotonic()
        time.sleep(4.0)  # the server is down
        during = [t for _, t in tap.topic("holo/alice/cloud") if t > stopped_at]
        signal2, _ = start_signal(tmp_path, port)
        wait_until(  # each join logs "joined room" once: a second line is the rejoin
            lambda: alice.text().count("joined room") >= 2 and bob.text().count("joined room") >= 2,
            60,
            "both to rejoin the restarted server",
        )
        rejoined_at = time.monotonic()
        time.sleep(2.0)
        after = [t for _, t in tap.topic("holo/alice/cloud") if t > rejoined_at]
    finally:
        for p in (bob, alice, signal2):
            if p is not None:
                p.stop()
        tap.close()
    print(
        f"\nwith the server down for 4 s: {len(during)} frames arrived; {len(after)} in the 2 s after it came back"
    )
    assert len(during) >= 30  # ~15 fps for 4 s: the running call did not need the server
    assert len(after) >= 15
    assert bob.text().count("is up") == 1  # no renegotiation: the same connection all along


@pytest.mark.timeout(240)
def test_a_lossy_delayed_uplink_never_stalls_over_a_second(tmp_path: Path) -> None:
    """Bob's uplink goes through a user-space relay that drops 10 % of his datagrams and delays the
    rest by 50 ms, into a TURN server (coturn) that carries the call; alice watches bob."""
    from tests.lossy_relay import LossyRelay

    started = start_turn(tmp_path)
    if started is None:
        pytest.skip(NO_TURNSERVER)
    turn, turn_port = started
    relay = LossyRelay(("127.0.0.1", turn_port), loss_up=0.10, delay_up_s=0.050, seed=9)
    # LIGHT is 15 fps a side: at 30 both calls, their workers, coturn and the relay saturate this
    # 2-core machine, and event loops starved of CPU (not the link) then stall for seconds.
    signal_proc, url = start_signal(tmp_path)
    alice, alice_bus = start_call(tmp_path, "alice", url, *LIGHT)
    tap = BusTap(alice_bus, ["holo/bob/cloud"])
    bob = None
    measure_s = 20.0
    try:
        bob, _ = start_call(tmp_path, "bob", url, *LIGHT, *turn_args(relay.port))
        wait_until(
            lambda: len(tap.topic("holo/bob/cloud")) >= 10, 120, "bob's frames through the lossy relay"
        )
        time.sleep(3.0)  # let the sender's budget settle to the link
        start = time.monotonic()
        time.sleep(measure_s)
        arrivals = [t for _, t in tap.topic("holo/bob/cloud") if t >= start]
    finally:
        for p in (bob, alice, signal_proc):
            if p is not None:
                p.stop()
        tap.close()
        relay.close()
        turn.terminate()
        turn.wait(10)
    gaps = [b - a for a, b in zip([start, *arrivals], arrivals, strict=False)]
    fps = len(arrivals) / measure_s
    dropped = relay.counts["up_dropped"] / max(1, relay.counts["up"])
    print(
        f"\n10 % loss + 50 ms delay on bob's uplink ({dropped:.1%} of {relay.counts['up']} datagrams dropped): "
        f"{fps:.1f} fps received at alice, longest gap {max(gaps) * 1000:.0f} ms "
        f"(gaps over 250 ms: {sum(g > 0.25 for g in gaps)}; over 500 ms: {sum(g > 0.5 for g in gaps)})"
    )
    assert relay.counts["up_dropped"] > 0  # the relay really impaired the link
    assert max(gaps) < 1.0
    assert fps >= 10
    assert "Traceback" not in alice.text() and bob is not None and "Traceback" not in bob.text()
