"""Calls end to end: real `holo signal` + two `holo call` processes on loopback, real clouds and voice.

Everything runs as separate processes talking over 127.0.0.1 (no STUN server; `--ice-address
127.0.0.1` offers loopback). Each call publishes what it sends and what it receives on its own
bus, which the test taps.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from holo.codec import StreamDecoder
from holo.net.adapt import AdaptiveBudget, LinkReport
from holo.net.chunking import Reassembler, split_packet
from holo.net.clock import OffsetEstimator
from tests.callkit import (
    NO_TURNSERVER,
    BusTap,
    start_call,
    start_signal,
    start_turn,
    tone_wav,
    turn_args,
    wait_until,
)

# -- the synchronous parts ---------------------------------------------------------------------------


def test_chunks_reassemble_in_any_order_and_old_partials_are_dropped() -> None:
    packet = bytes(range(256)) * 1000
    chunks = split_packet(7, packet, max_message_bytes=10_000)
    assert len(chunks) == 26 and all(len(c) <= 10_000 for c in chunks)
    r = Reassembler()
    older = split_packet(6, b"x" * 30_000, max_message_bytes=10_000)
    assert r.push(older[0]) is None  # frame 6 never completes
    out = None
    for c in reversed(chunks):
        out = r.push(c) or out
    assert out == packet
    assert r.frames_dropped == 1  # frame 6's partial was forgotten once frame 7 completed
    assert r.push(older[1]) is None


def test_reassembler_refuses_malformed_messages() -> None:
    r = Reassembler(max_frame_bytes=1000)
    with pytest.raises(Exception, match="shorter than its chunk header"):
        r.push(b"abc")
    with pytest.raises(Exception, match="impossible"):
        r.push(b"\x00\x00\x00\x01\x00\x05\x00\x02payload")
    big = split_packet(1, b"y" * 5000, max_message_bytes=600)
    with pytest.raises(Exception, match="grew past 1000 bytes"):
        for c in big:
            r.push(c)


def test_clock_offset_prefers_the_fastest_exchange() -> None:
    est = OffsetEstimator()
    true_offset = 5_000_000  # the remote clock runs 5 ms ahead
    est.add(0, 1_000_000 + true_offset, 1_100_000 + true_offset, 40_000_000)  # a slow, asymmetric exchange
    est.add(100_000_000, 100_500_000 + true_offset, 100_600_000 + true_offset, 101_100_000)  # a fast one
    assert abs(est.offset_ns - true_offset) < 100_000
    assert est.to_local_ns(200_000_000 + true_offset) == pytest.approx(200_000_000, abs=100_000)


def test_budget_fits_a_slow_link_and_recovers() -> None:
    budget = AdaptiveBudget(ceiling_points=100_000, fps=30)
    # A link delivering 0.4 Mbit/s: 30 frames offered, 10 dropped, a queue building up, 2 bits per point.
    congested = LinkReport(1.0, 30, 10, 250_000, 0, 200_000, 2.0)
    first = budget.update(congested)
    assert first == 50_000  # at most halved by one report
    for _ in range(4):  # 25k, 12.5k, 6.25k, then the fitting budget
        squeezed = budget.update(congested)
    fitting = 0.8 * (250_000 - 200_000) * 8 / 30 / 2.0
    assert squeezed == pytest.approx(max(fitting, 5000), rel=0.01)
    for _ in range(30):
        recovered = budget.update(LinkReport(1.0, 30, 0, 100_000, 0, 0, 2.0))
    assert recovered == 100_000


# -- real processes ----------------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_two_calls_exchange_real_clouds_and_voice(five_people: Path, tmp_path: Path) -> None:
    signal_proc, url = start_signal(tmp_path)
    tone = tone_wav(tmp_path / "tone.wav", 440.0)
    source = [
        "--source",
        f"still:pcd:{five_people / 'five_people.pcd'}",
        "--max-points",
        "40000",
        "--fps",
        "15",
    ]
    alice, alice_bus = start_call(
        tmp_path,
        "alice",
        url,
        *source,
        "--audio-in",
        str(tone),
        "--seconds",
        "40",
        "--stats-json",
        str(tmp_path / "alice.json"),
    )
    bob_wav = tmp_path / "bob-hears.wav"
    bob, bob_bus = start_call(
        tmp_path,
        "bob",
        url,
        "--source",
        "synthetic",
        "--fps",
        "15",
        "--no-audio",
        "--audio-out",
        str(bob_wav),
        "--seconds",
        "40",
        "--stats-json",
        str(tmp_path / "bob.json"),
    )
    tap_alice = BusTap(alice_bus, ["holo/alice/cloud"])
    tap_bob = BusTap(bob_bus, ["holo/alice/cloud", "holo/bob/stats", "holo/alice/audio"])
    try:
        wait_until(
            lambda: len(tap_bob.topic("holo/alice/cloud")) >= 30, 90, "30 of alice's frames at bob's side"
        )
        wait_until(lambda: tap_bob.topic("holo/alice/audio"), 30, "alice's voice at bob's side")
        wait_until(lambda: tap_bob.topic("holo/bob/stats"), 30, "bob's stats on the bus")
    finally:
        for proc in (bob, alice):
            proc.stop()
        tap_alice.close()
        tap_bob.close()
        signal_proc.stop()
    # The frames bob received decode to exactly the clouds alice sent (the codec is lossless in geometry).
    sent = {}
    decoder = StreamDecoder()
    for payload, _ in tap_alice.topic("holo/alice/cloud"):
        cloud = decoder.decode(payload)
        sent[cloud.sequence] = cloud
    matched = 0
    for payload, _ in tap_bob.topic("holo/alice/cloud"):
        got = StreamDecoder().decode(payload)
        if got.sequence in sent:
            np.testing.assert_array_equal(got.points_m, sent[got.sequence].points_m)
            np.testing.assert_array_equal(got.colors, sent[got.sequence].colors)
            matched += 1
    assert matched >= 20, f"only {matched} received frames matched a sent one"
    assert 20_000 < len(next(iter(sent.values()))) <= 40_000  # real people, within the point budget
    # Voice: bob's recording of alice is the 440 Hz tone.
    with wave.open(str(bob_wav)) as w:
        pcm = (
            np.frombuffer(w.readframes(w.getnframes()), "<i2")
            .reshape(-1, w.getnchannels())[:, 0]
            .astype(float)
        )
        rate = w.getframerate()
    assert len(pcm) > rate  # more than a second of voice
    window = pcm[-rate:]
    peak_hz = np.argmax(np.abs(np.fft.rfft(window))) * rate / len(window)
    assert abs(peak_hz - 440) < 5
    stats = json.loads(tap_bob.topic("holo/bob/stats")[-1][0])
    for key in ("fps_sent", "fps_received", "latency_p50_ms", "latency_p95_ms", "bitrate_in_mbps", "rtt_ms"):
        assert key in stats
    summary = json.loads((tmp_path / "bob.json").read_text())["summary"]
    assert summary["frames_received"] >= 30 and summary["latency_p50_ms"] is not None
    for proc in (alice, bob):
        assert "Traceback" not in proc.text(), proc.text()[-3000:]


@pytest.mark.timeout(180)
def test_call_through_a_turn_relay_only(tmp_path: Path) -> None:
    """Both sides relay-only through coturn; bob reaches it through a loss-free user-space relay whose
    counters show the call's datagrams really went through TURN."""
    from tests.lossy_relay import LossyRelay

    started = start_turn(tmp_path)
    if started is None:
        pytest.skip(NO_TURNSERVER)
    turn, port = started
    relay = LossyRelay(("127.0.0.1", port))
    signal_proc, url = start_signal(tmp_path)
    light = ["--no-audio", "--fps", "15", "--seconds", "40"]
    alice, _alice_bus = start_call(tmp_path, "alice", url, *turn_args(port), *light)
    bob, bob_bus = start_call(tmp_path, "bob", url, *turn_args(relay.port), *light)
    tap = BusTap(bob_bus, ["holo/alice/cloud"])
    try:
        wait_until(lambda: len(tap.topic("holo/alice/cloud")) >= 20, 90, "20 frames through the TURN relay")
    finally:
        for proc in (bob, alice, signal_proc):
            proc.stop()
        tap.close()
        relay.close()
        turn.terminate()
        turn.wait(10)
    log = bob.text()
    assert "relay" in log.lower() or "Connection(0)" in log or "connected" in log
    # Bob has no other way to alice than his TURN server, behind the relay: alice's frames came down
    # through it, and bob's own traffic (his frames, acknowledgements) went up.
    assert relay.counts["down"] >= 20 and relay.counts["up"] >= 20, relay.counts
    assert all(StreamDecoder().decode(p).participant == "alice" for p, _ in tap.topic("holo/alice/cloud")[:5])


@pytest.mark.timeout(120)
def test_a_peer_sending_garbage_is_dropped_and_the_call_survives(tmp_path: Path) -> None:
    """A hostile peer joins with the token and sends garbage, then valid frames, over the cloud channel."""
    import asyncio

    from aiortc import RTCPeerConnection, RTCSessionDescription

    from holo.capture import CapturePipeline
    from holo.codec import StreamEncoder
    from holo.net.call import CLOUD_CHANNEL_ID, CONTROL_CHANNEL_ID
    from holo.net.ice import offer_addresses, rtc_configuration
    from holo.net.signaling import SignalingClient
    from holo.sources import open_source

    signal_proc, url = start_signal(tmp_path)
    alice, alice_bus = start_call(
        tmp_path,
        "alice",
        url,
        "--no-audio",
        "--fps",
        "10",
        "--seconds",
        "60",
        "--stats-json",
        str(tmp_path / "alice.json"),
    )
    tap = BusTap(alice_bus, ["holo/mallory/cloud"])
    with open_source("synthetic:5") as src:
        cloud = CapturePipeline().process(next(iter(src))).with_(participant="mallory")
    good = [StreamEncoder("holo").encode_bytes(cloud.with_(sequence=i)) for i in range(5)]

    async def mallory() -> None:
        offer_addresses(["127.0.0.1"])
        client = SignalingClient(url, "room1", "secret-token", "mallory")
        joined = await client.connect()
        assert joined["offerer"]
        pc = RTCPeerConnection(configuration=rtc_configuration())
        channel = pc.createDataChannel("holo-cloud", ordered=False, negotiated=True, id=CLOUD_CHANNEL_ID)
        control = pc.createDataChannel("holo-control", negotiated=True, id=CONTROL_CHANNEL_ID)
        pc.addTransceiver("audio", direction="recvonly")
        opened = asyncio.Event()
        channel.on("open", opened.set)
        await pc.setLocalDescription(await pc.createOffer())
        await client.send_signal(
            {"kind": "offer", "sdp": pc.localDescription.sdp, "session": "m", "generation": 1}
        )
        while True:
            msg = await client.recv(30)
            assert msg is not None, "no answer from alice"
            if msg.get("type") == "signal" and msg["data"].get("kind") == "answer":
                await pc.setRemoteDescription(RTCSessionDescription(msg["data"]["sdp"], "answer"))
                break
        await asyncio.wait_for(opened.wait(), 30)
        await asyncio.sleep(3)  # alice loads her decoder's compiled kernels in her first seconds
        rng = np.random.default_rng(0)
        for i in range(40):  # garbage of every kind
            channel.send(rng.bytes(int(rng.integers(1, 3000))))
            channel.send(split_packet(1000 + i, rng.bytes(500))[0])  # a well-formed chunk of a bogus packet
            bad = bytearray(good[0])
            bad[len(bad) // 2] ^= 0xFF
            channel.send(split_packet(2000 + i, bytes(bad))[0])  # a real packet, corrupted
        control.send("{not json")
        for i, packet in enumerate(good):  # then the real thing
            channel.send(split_packet(3000 + i, packet)[0])
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        await pc.close()
        await client.close()

    try:
        wait_until(lambda: "joined room room1" in alice.text(), 60, "alice to join the room")
        asyncio.run(asyncio.wait_for(mallory(), 90))
        wait_until(
            lambda: len(tap.topic("holo/mallory/cloud")) >= 5, 20, "mallory's valid frames on alice's bus"
        )
        assert alice.proc.poll() is None, "alice's call died"
    finally:
        alice.stop()
        tap.close()
        signal_proc.stop()
    log = alice.text()
    assert "dropped data from mallory" in log
    assert "CRC mismatch" in log or "not a Holo packet" in log
    assert "Traceback" not in log, log[-3000:]


def test_send_gate_keeps_the_queue_within_a_tenth_of_a_second() -> None:
    from holo.net.adapt import SendGate

    gate = SendGate(max_wait_s=0.1)
    # Before any measurement: two frames plus 64 KiB may wait.
    assert gate.admit(0.0, 0, 10_000)
    gate.sent(10_000)
    assert gate.admit(0.01, 80_000, 10_000) is True
    assert gate.admit(0.02, 90_000, 10_000) is False
    # A link draining 50 kB/s: 5 kB may wait ahead of a new frame (but one frame always may).
    gate = SendGate(max_wait_s=0.1)
    queued = 0
    t = 0.0
    for _ in range(60):  # 2 s at 30 fps of 3 kB frames into a 50 kB/s link
        if gate.admit(t, queued, 3000):
            gate.sent(3000)
            queued += 3000
        t += 1 / 30
        queued = max(0, queued - int(50_000 / 30))
    rate = gate.drain_rate()
    assert rate is not None and 40_000 < rate < 60_000
    assert gate.admit(t, 4000, 3000) and not gate.admit(t, 6000, 3000)
    assert gate.admit(t, 20_000, 30_000)  # a frame larger than the allowance may still wait alone
    assert gate.admit(t, 0, 100_000)  # an empty queue always takes a frame
