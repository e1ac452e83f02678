"""``holo call``: one side of a two-person call over WebRTC (aiortc).

What travels between the peers:

- the **point-cloud stream** on the data channel ``holo-cloud``: one Holo packet per frame, split
  into ≤ 64 KiB messages (:mod:`holo.net.chunking`). The channel is *unordered and partially
  reliable* (``maxPacketLifeTime`` 250 ms): SCTP retransmits a lost piece while it can still arrive
  in time, then gives up on it, so one lost UDP datagram never holds back later frames (as a
  reliable channel would) and never loses a frame outright (as a fully unreliable one does with
  ~20 datagrams per frame). The receiver shows the newest complete frame and drops older partial
  ones;
- **control** on the reliable, ordered channel ``holo-control``: clock pings (:mod:`holo.net.clock`)
  and each side's stats, which the sender uses to fit the stream to the link;
- **voice** as an Opus audio track.

Flow control: before a frame is sent the channel's ``bufferedAmount`` is checked against the rate at
which the queue drains (:class:`~holo.net.adapt.SendGate`); a frame that would wait more than 100 ms
behind what is queued is dropped (counted) — latency never grows silently. Once a
second :class:`~holo.net.adapt.AdaptiveBudget` sets the capture's point budget from the measured
throughput.

Resilience: the signaling connection reconnects by itself (a running call does not need it); if the
other side leaves or its connection fails, the call waits for it and renegotiates when it returns.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import secrets
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from holo.bus import Bus, Publisher, cloud_topic
from holo.capture import CaptureConfig
from holo.codec.packet import Packet
from holo.errors import CallError, ConfigError, HoloError, SignalingError
from holo.net.adapt import AdaptiveBudget, LinkReport, SendGate
from holo.net.audio import WavWriter, frame_to_chunk, open_microphone, pack_audio
from holo.net.chunking import MAX_MESSAGE_BYTES, Reassembler, split_packet
from holo.net.clock import OffsetEstimator
from holo.net.ice import offer_addresses, rtc_configuration
from holo.net.sctp import use_realtime_timers
from holo.net.worker import REPLAY_PREFIX, CaptureProcess, DecodeProcess, WorkerConfig
from holo.sources import SourceOptions
from holo.stats import percentile

if TYPE_CHECKING:
    from aiortc import RTCConfiguration

__all__ = ["CallOptions", "CallSession", "run_call"]

logger = logging.getLogger(__name__)

CLOUD_CHANNEL_ID = 1
CONTROL_CHANNEL_ID = 2
PACKET_LIFETIME_MS = 250
STATS_PERIOD_S = 2.0


@dataclass
class CallOptions:
    room: str
    signal_url: str
    token: str
    name: str
    worker: WorkerConfig | None
    bus_address: str | None = None
    stun: list[str] = field(default_factory=list)
    turn: list[str] = field(default_factory=list)
    turn_user: str | None = None
    turn_pass: str | None = None
    ice_policy: str = "all"
    ice_addresses: list[str] = field(default_factory=list)
    audio: bool = True
    audio_in: str | None = None
    audio_out: str | None = None
    seconds: float | None = None
    stats_json: str | None = None
    max_points: int | None = None
    insecure_tls: bool = False
    record: str | None = None


@dataclass
class _Window:
    """Counters for one stats period."""

    started: float = field(default_factory=time.monotonic)
    frames_sent: int = 0
    frames_offered: int = 0
    frames_dropped_queue: int = 0
    frames_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    queued_start: int = 0
    loop_lag_ms: float = 0.0


class CallSession:
    """Runs one side of the call until stopped (see the module docstring)."""

    def __init__(self, options: CallOptions) -> None:
        self.options = options
        self.session_id = secrets.token_hex(8)
        self.clock = OffsetEstimator()
        self.reassembler = Reassembler()
        self.pc: Any = None
        self.pc_generation = 0
        self.cloud_channel: Any = None
        self.control_channel: Any = None
        self.remote_name: str | None = None
        self.remote_session: str | None = None
        self.connected = asyncio.Event()
        self.stopping = asyncio.Event()
        self.signaling: Any = None
        self.capture: CaptureProcess | None = None
        self.bus: Bus | None = None
        self.publisher: Publisher | None = None
        self.player: Any = None
        self.wav: WavWriter | None = None
        self.budget = AdaptiveBudget(
            ceiling_points=options.max_points or 200_000, fps=options.worker.fps if options.worker else 30.0
        )
        self.window = _Window()
        self.gate = SendGate()
        self.totals: dict[str, int] = {
            "frames_sent": 0,
            "frames_received": 0,
            "frames_dropped_queue": 0,
            "frames_dropped_capture": 0,
            "frames_dropped_link": 0,
            "frames_dropped_decode": 0,
            "packets_refused": 0,
            "bytes_received": 0,
            "bytes_sent": 0,
            "audio_frames_received": 0,
            "connections": 0,
        }
        # (seq, arrival ns, ms): the end-of-call summary covers the last 10 minutes; --stats-json
        # keeps up to ~2 hours for analysis.
        self.latency_log: deque[tuple[int, int, float]] = deque(
            maxlen=200_000 if options.stats_json else 18_000
        )
        self.period_log: deque[dict[str, Any]] = deque(maxlen=10_000)
        self.last_remote_stats: dict[str, Any] = {}
        self.last_bpp = 2.0
        self._last_seq: int | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._refusal_log_at = 0.0
        self._connected_at: float | None = None
        self.decoder_process: DecodeProcess | None = None
        self.decodes_in_flight = 0

    # -- lifecycle -----------------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        offer_addresses(self.options.ice_addresses or None)
        use_realtime_timers()
        self.bus = Bus(self.options.bus_address)
        self.publisher = self.bus.publisher()
        if self.options.record:
            from holo.record.writer import Recorder

            self.recorder = Recorder(
                self.options.record,
                bus=self.bus,
                note=f"holo call {self.options.room} as {self.options.name}",
                recorder_name="holo call --record",
            )
            try:
                self.recorder.start()  # an unwritable path is refused here, before the call starts
            except HoloError:
                self.bus.close()
                raise
            logger.info("recording the call to %s", self.options.record)
        if self.options.audio_out:
            self.wav = WavWriter(self.options.audio_out)
        if self.options.audio:
            self.player, what = open_microphone(self.options.audio_in)
            logger.info("voice from %s", what)
        if self.options.worker is not None:
            self.capture = CaptureProcess(self.options.worker, self._on_worker)
            self.capture.start(loop)
        self.decoder_process = DecodeProcess(
            self.options.bus_address, logging.getLogger().getEffectiveLevel(), self._on_decoder
        )
        self.decoder_process.start(loop)
        self._tasks = [
            asyncio.create_task(self._signaling_loop(), name="signaling"),
            asyncio.create_task(self._ping_loop(), name="ping"),
            asyncio.create_task(self._lag_loop(), name="lag"),
            asyncio.create_task(self._stats_loop(), name="stats"),
        ]
        try:
            if self.options.seconds:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), self.options.seconds)
            else:
                await self.stopping.wait()
        finally:
            await self._shutdown()
        if self._fatal:
            raise CallError(self._fatal)
        return self.summary()

    _fatal: str | None = None

    def stop(self, reason: str | None = None) -> None:
        if reason and not self._fatal:
            self._fatal = reason
        self.stopping.set()

    async def _shutdown(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self._close_pc()
        if self.signaling is not None:
            with contextlib.suppress(Exception):
                await self.signaling.close()
        if self.capture is not None:
            self.capture.stop()
        if self.wav is not None:
            self.wav.close()
        if self.player is not None and getattr(self.player, "audio", None) is not None:
            with contextlib.suppress(Exception):
                self.player.audio.stop()
        if self.options.stats_json:
            self._write_stats_json()
        if self.decoder_process is not None:
            self.decoder_process.stop()
        self._stop_recorder()
        if self.bus is not None:
            self.bus.close()

    recorder: Any = None
    _recorder_reported = False

    def _check_recorder(self) -> None:
        """A recording that failed (a full disk) is reported once; the call goes on without it."""
        if self.recorder is not None and self.recorder.error is not None and not self._recorder_reported:
            self._recorder_reported = True
            logger.error("recording stopped, the call goes on: %s", self.recorder.error)

    def _stop_recorder(self) -> None:
        if self.recorder is None:
            return
        try:
            report = self.recorder.stop()
            logger.info(
                "recorded %d messages (%.1f MB) to %s",
                report.messages,
                report.bytes_written / 1e6,
                report.path,
            )
        except HoloError as exc:
            self._check_recorder()
            if not self._recorder_reported:
                logger.error("the recording failed: %s", exc)

    # -- signaling -------------------------------------------------------------------------------------
    async def _signaling_loop(self) -> None:
        from holo.net.signaling import SignalingClient

        delay = 0.5
        ssl_context = None
        if self.options.signal_url.startswith("wss://") and self.options.insecure_tls:
            import ssl

            ssl_context = ssl.create_default_context()
            ssl_context.check_hostname = False
            ssl_context.verify_mode = ssl.CERT_NONE
        while not self.stopping.is_set():
            client = SignalingClient(
                self.options.signal_url,
                self.options.room,
                self.options.token,
                self.options.name,
                ssl_context=ssl_context,
            )
            try:
                joined = await client.connect()
            except SignalingError as exc:
                if _is_refusal(exc):
                    self.stop(f"the signaling server refused to join: {exc}")
                    return
                logger.warning("%s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.5
            self.signaling = client
            logger.info(
                "joined room %s on %s as %s (peers: %s)",
                self.options.room,
                self.options.signal_url,
                self.options.name,
                ", ".join(joined.get("peers", [])) or "none yet",
            )
            if joined.get("offerer") and joined.get("peers") and not self._pc_alive():
                await self._start_offer(joined["peers"][0])
            try:
                while True:
                    msg = await client.recv()  # without a timeout: a message, or SignalingError
                    assert msg is not None
                    await self._on_signal_message(msg)
            except SignalingError as exc:
                logger.warning("signaling connection lost (%s); the call goes on, reconnecting", exc)
            finally:
                self.signaling = None
                with contextlib.suppress(Exception):
                    await client.close()
            await asyncio.sleep(delay)

    async def _on_signal_message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "peer-joined":
            logger.info("%s joined the room", msg.get("peer"))
        elif kind == "peer-left":
            logger.info("%s left the room", msg.get("peer"))
            if msg.get("peer") == self.remote_name:
                await self._close_pc()
                self._publish_presence(msg.get("peer"), present=False)
        elif kind == "signal":
            data = msg.get("data") or {}
            sender = str(msg.get("from", "?"))
            what = data.get("kind")
            if what == "offer":
                await self._accept_offer(sender, data)
            elif what == "answer" and self.pc is not None and data.get("generation") == self.pc_generation:
                from aiortc import RTCSessionDescription

                try:
                    await self.pc.setRemoteDescription(
                        RTCSessionDescription(sdp=str(data.get("sdp")), type="answer")
                    )
                    self.remote_session = str(data.get("session"))
                except Exception as exc:  # a malformed SDP from the peer
                    logger.warning("refused %s's answer: %s", sender, exc)
                    await self._close_pc()

    # -- peer connection ------------------------------------------------------------------------------
    def _pc_alive(self) -> bool:
        return self.pc is not None and self.pc.connectionState in ("new", "connecting", "connected")

    def _new_pc(self, remote: str) -> Any:
        from aiortc import RTCPeerConnection

        pc = RTCPeerConnection(configuration=_rtc_config(self.options))
        self.pc_generation += 1
        generation = self.pc_generation
        self.pc = pc
        self.remote_name = remote
        self.gate = SendGate()  # a new channel starts with an empty queue
        self.cloud_channel = pc.createDataChannel(
            "holo-cloud",
            ordered=False,
            maxPacketLifeTime=PACKET_LIFETIME_MS,
            negotiated=True,
            id=CLOUD_CHANNEL_ID,
        )
        self.control_channel = pc.createDataChannel("holo-control", negotiated=True, id=CONTROL_CHANNEL_ID)
        self.cloud_channel.on("message", lambda m: self._on_cloud_message(m, generation))
        self.control_channel.on("message", lambda m: self._on_control_message(m, generation))
        self.control_channel.on("open", lambda: self._on_open(generation))
        if self.player is not None and self.player.audio is not None:
            pc.addTrack(self.player.audio)
        else:
            pc.addTransceiver("audio", direction="recvonly")

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio":
                self._tasks.append(asyncio.create_task(self._receive_audio(track, remote), name="audio"))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if generation != self.pc_generation:
                return
            logger.info("connection to %s: %s", remote, pc.connectionState)
            if pc.connectionState == "connected":
                self.totals["connections"] += 1
            if pc.connectionState in ("failed", "closed"):
                self.connected.clear()
                self._publish_presence(remote, present=False)

        return pc

    def _on_open(self, generation: int) -> None:
        if generation != self.pc_generation:
            return
        self.connected.set()
        self._connected_at = time.monotonic()
        self._publish_presence(self.remote_name, present=True)
        logger.info("call with %s is up", self.remote_name)
        for _ in range(5):  # a quick first clock estimate
            self._send_ping()

    async def _start_offer(self, remote: str) -> None:
        await self._close_pc()
        pc = self._new_pc(remote)
        offer = await pc.createOffer()
        await pc.setLocalDescription(offer)  # aiortc gathers all candidates here (no trickle)
        await self._send_signal(
            {
                "kind": "offer",
                "sdp": pc.localDescription.sdp,
                "session": self.session_id,
                "generation": self.pc_generation,
            }
        )

    async def _accept_offer(self, sender: str, data: dict[str, Any]) -> None:
        from aiortc import RTCSessionDescription

        if (
            self._pc_alive()
            and self.pc.connectionState == "connected"
            and data.get("session") == self.remote_session
        ):
            logger.info("ignoring a repeated offer from %s for the running call", sender)
            return
        await self._close_pc()
        pc = self._new_pc(sender)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=str(data.get("sdp")), type="offer"))
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except Exception as exc:  # a malformed SDP from the peer
            logger.warning("refused %s's offer: %s", sender, exc)
            await self._close_pc()
            return
        self.remote_session = str(data.get("session"))
        await self._send_signal(
            {
                "kind": "answer",
                "sdp": pc.localDescription.sdp,
                "session": self.session_id,
                "generation": data.get("generation"),
            }
        )

    async def _send_signal(self, data: dict[str, Any]) -> None:
        if self.signaling is None:
            logger.warning("cannot signal: not connected to the signaling server")
            return
        with contextlib.suppress(SignalingError):
            await self.signaling.send_signal(data)

    async def _close_pc(self) -> None:
        pc, self.pc = self.pc, None
        self.pc_generation += 1
        self.connected.clear()
        self.cloud_channel = self.control_channel = None
        # A signaling state of "closed" means a close is already under way: aiortc starts one itself
        # when the peer's DTLS closes. A second close() would await aiortc's private future, and
        # cancelling that wait (timeout, shutdown) cancels the future under aiortc's own close task,
        # which then fails with InvalidStateError ("Task exception was never retrieved").
        if pc is not None and pc.signalingState != "closed":
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), 3.0)

    def _publish_presence(self, peer: str | None, *, present: bool) -> None:
        if self.publisher is not None and peer:
            self.publisher.send(
                f"holo/{peer}/presence", json.dumps({"present": present, "time_ns": time.time_ns()}).encode()
            )

    # -- sending ---------------------------------------------------------------------------------------
    def _on_worker(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "error":
            logger.error("%s", msg[1])
            self.stop(f"capture failed: {msg[1]}")
            return
        if kind == "exit":
            if not self.stopping.is_set():
                self.stop("the capture process exited unexpectedly")
            return
        if kind == "end":
            logger.info("the source has no more frames")
            return
        if kind != "packet":
            return
        _, packet, info = msg
        if self.capture is not None:
            self.capture.credit(1)
        self.totals["frames_dropped_capture"] = int(info.get("dropped", 0))
        if self.publisher is not None:
            self.publisher.send(cloud_topic(self.options.name), packet)
        if info.get("points"):
            self.last_bpp = len(packet) * 8 / info["points"]
        self.window.frames_offered += 1
        channel = self.cloud_channel
        if channel is None or channel.readyState != "open":
            return
        # Flow control: a frame joins the queue only if what waits ahead of it leaves within 100 ms.
        if not self.gate.admit(time.monotonic(), channel.bufferedAmount, len(packet)):
            self.window.frames_dropped_queue += 1
            self.totals["frames_dropped_queue"] += 1
            return
        for message in split_packet(info["sequence"], packet, max_message_bytes=MAX_MESSAGE_BYTES):
            channel.send(message)
        self.gate.sent(len(packet))
        self.window.frames_sent += 1
        self.window.bytes_sent += len(packet)
        self.totals["frames_sent"] += 1
        self.totals["bytes_sent"] += len(packet)

    # -- receiving -------------------------------------------------------------------------------------
    def _on_cloud_message(self, message: Any, generation: int) -> None:
        if generation != self.pc_generation or isinstance(message, str):
            return
        self.window.bytes_received += len(message)
        self.totals["bytes_received"] += len(message)
        try:
            packet_bytes = self.reassembler.push(message)
        except HoloError as exc:
            self._refuse(exc)
            return
        if packet_bytes is None or self.decoder_process is None:
            return
        try:  # cheap checks here (magic, lengths, CRC, sender); the decode process does the rest
            packet = Packet.parse(packet_bytes)
            if packet.participant != self.remote_name:
                raise CallError(
                    f"packet names participant {packet.participant!r}, but the peer is {self.remote_name!r}"
                )
        except HoloError as exc:
            self._refuse(exc)
            return
        if self.decodes_in_flight >= 2:  # the decoder is behind: this frame would only add delay
            self.totals["frames_dropped_decode"] += 1
            return
        if self.decoder_process.decode(packet_bytes, self.clock.offset_ns):
            self.decodes_in_flight += 1

    def _on_decoder(self, msg: tuple[Any, ...]) -> None:
        """Outcomes from the decode process, which also publishes good frames on the bus."""
        kind = msg[0]
        if kind == "exit":
            if not self.stopping.is_set():
                self.stop("the decode process exited unexpectedly")
            return
        self.decodes_in_flight = max(0, self.decodes_in_flight - 1)
        if kind == "refused":
            self._refuse(CallError(msg[1]))
            return
        _, sequence, decoded_ns, latency_ms, _points = msg
        if self._last_seq is not None and sequence > self._last_seq + 1:
            self.totals["frames_dropped_link"] += sequence - self._last_seq - 1
        self._last_seq = sequence
        self.window.frames_received += 1
        self.totals["frames_received"] += 1
        if self.clock.ready:
            self.window.latencies_ms.append(latency_ms)
            self.latency_log.append((sequence, decoded_ns, latency_ms))

    def _refuse(self, exc: Exception) -> None:
        self.totals["packets_refused"] += 1
        now = time.monotonic()
        if now - self._refusal_log_at > 1.0:  # at most one line a second for a peer sending garbage
            self._refusal_log_at = now
            logger.warning(
                "dropped data from %s: %s (%d dropped so far)",
                self.remote_name,
                exc,
                self.totals["packets_refused"],
            )

    async def _receive_audio(self, track: Any, remote: str) -> None:
        from aiortc.mediastreams import MediaStreamError

        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            chunk = frame_to_chunk(frame, time.time_ns())
            self.totals["audio_frames_received"] += 1
            if self.publisher is not None:
                self.publisher.send(f"holo/{remote}/audio", pack_audio(chunk))
            if self.wav is not None:
                self.wav.write(chunk)

    # -- control: clock and stats ---------------------------------------------------------------------
    def _send_control(self, payload: dict[str, Any]) -> None:
        channel = self.control_channel
        if channel is not None and channel.readyState == "open":
            channel.send(json.dumps(payload))

    def _send_ping(self) -> None:
        self._send_control({"kind": "ping", "t1": time.time_ns()})

    def _on_control_message(self, message: Any, generation: int) -> None:
        t_recv = time.time_ns()
        if generation != self.pc_generation:
            return
        try:
            if not isinstance(message, str) or len(message) > 16384:
                raise ValueError("not a short text message")
            msg = json.loads(message)
            kind = msg["kind"]
            if kind == "ping":
                self._send_control({"kind": "pong", "t1": int(msg["t1"]), "t2": t_recv, "t3": time.time_ns()})
            elif kind == "pong":
                self.clock.add(int(msg["t1"]), int(msg["t2"]), int(msg["t3"]), t_recv)
            elif kind == "stats":
                self.last_remote_stats = dict(msg.get("stats", {}))
        except (ValueError, KeyError, TypeError) as exc:
            self._refuse(CallError(f"malformed control message ({exc})"))

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._send_ping()

    async def _lag_loop(self) -> None:
        """How late the event loop wakes up: the delay every network event waits before handling."""
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            self.window.loop_lag_ms = max(self.window.loop_lag_ms, (time.perf_counter() - t0 - 0.01) * 1000)

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(STATS_PERIOD_S)
            stats = self._period_stats()
            self._adapt(stats)
            self._check_recorder()
            logger.info(
                "sent %.1f fps (%d dropped), received %.1f fps, latency p50 %s / p95 %s ms, %.2f / %.2f Mbit/s out/in, "
                "rtt %s ms, loop lag %.0f ms, capture drops %d",
                stats["fps_sent"],
                stats["dropped_queue"],
                stats["fps_received"],
                _fmt(stats["latency_p50_ms"]),
                _fmt(stats["latency_p95_ms"]),
                stats["bitrate_out_mbps"],
                stats["bitrate_in_mbps"],
                _fmt(stats["rtt_ms"]),
                stats["loop_lag_max_ms"],
                self.totals["frames_dropped_capture"],
            )
            self._send_control({"kind": "stats", "stats": stats})
            self.period_log.append(stats)
            if self.publisher is not None:
                self.publisher.send(f"holo/{self.options.name}/stats", json.dumps(stats).encode())

    def _period_stats(self) -> dict[str, Any]:
        w = self.window
        seconds = max(time.monotonic() - w.started, 1e-3)
        channel = self.cloud_channel
        queued = channel.bufferedAmount if channel is not None else 0
        rtt = self.clock.rtt_ns
        stats = {
            "participant": self.options.name,
            "peer": self.remote_name,
            "connected": self.connected.is_set(),
            "fps_sent": w.frames_sent / seconds,
            "fps_received": w.frames_received / seconds,
            "dropped_queue": w.frames_dropped_queue,
            "latency_p50_ms": percentile(w.latencies_ms, 50),
            "latency_p95_ms": percentile(w.latencies_ms, 95),
            "bitrate_out_mbps": w.bytes_sent * 8 / seconds / 1e6,
            "bitrate_in_mbps": w.bytes_received * 8 / seconds / 1e6,
            "rtt_ms": rtt / 1e6 if rtt is not None else None,
            "clock_offset_ms": self.clock.offset_ns / 1e6 if self.clock.ready else None,
            "point_budget": self.budget.points,
            "queued_bytes": queued,
            "loop_lag_max_ms": w.loop_lag_ms,
            "time_ns": time.time_ns(),
            **{f"total_{k}": v for k, v in self.totals.items()},
        }
        self._report = LinkReport(
            seconds=seconds,
            frames_offered=w.frames_offered,
            frames_dropped=w.frames_dropped_queue,
            bytes_sent=w.bytes_sent,
            queued_bytes_start=w.queued_start,
            queued_bytes_end=queued,
            bits_per_point=self.last_bpp,
            receiver_latency_p95_ms=self.last_remote_stats.get("latency_p95_ms") if self._settled() else None,
        )
        self.window = _Window(queued_start=queued)
        return stats

    def _settled(self) -> bool:
        """Past the first seconds of a connection (warm-up, first clock estimates)."""
        return self._connected_at is not None and time.monotonic() - self._connected_at > 4.0

    def _adapt(self, stats: dict[str, Any]) -> None:
        if self.capture is None or not self.connected.is_set() or not self._settled():
            return  # the first seconds say more about a congestion window opening than about the link
        before = self.budget.points
        after = self.budget.update(self._report)
        if after != before:
            logger.info(
                "point budget %d -> %d (link ~%.1f Mbit/s)",
                before,
                after,
                (self.budget.throughput_bps or 0) / 1e6,
            )
            self.capture.set_budget(after)

    # -- results ---------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        lat = [ms for _, _, ms in self.latency_log]
        return {
            "participant": self.options.name,
            "peer": self.remote_name,
            "latency_p50_ms": percentile(lat, 50),
            "latency_p95_ms": percentile(lat, 95),
            "clock_offset_ms": self.clock.offset_ns / 1e6 if self.clock.ready else None,
            **self.totals,
        }

    def _write_stats_json(self) -> None:
        payload = {
            "summary": self.summary(),
            "frames": [{"sequence": s, "arrival_ns": t, "latency_ms": ms} for s, t, ms in self.latency_log],
            "periods": list(self.period_log),
        }
        try:
            with open(self.options.stats_json, "w", encoding="utf-8") as f:  # type: ignore[arg-type]
                json.dump(payload, f)
        except OSError as exc:
            logger.error("could not write %s: %s", self.options.stats_json, exc.strerror)


def _rtc_config(options: CallOptions) -> RTCConfiguration:
    """The peer connection's ICE configuration (raises ConfigError for bad ICE options)."""
    return rtc_configuration(
        stun=options.stun,
        turn=options.turn,
        turn_user=options.turn_user,
        turn_pass=options.turn_pass,
        policy=options.ice_policy,
    )


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _is_refusal(exc: SignalingError) -> bool:
    from holo.net.signaling import SignalingRefusal

    # name-taken is not final: the server frees a dead connection's name within ~15 s.
    return isinstance(exc, SignalingRefusal) and exc.code in (
        "bad-token",
        "room-full",
        "no-such-room",
        "server-full",
    )


# -- command line ----------------------------------------------------------------------------------------


def add_call_arguments(p: argparse.ArgumentParser) -> None:
    from holo.cli import add_codec_options, add_source_options

    p.add_argument("room", help="room name (letters, digits, . _ -)")
    p.add_argument(
        "--signal",
        required=True,
        metavar="URL",
        help="signaling server, e.g. ws://host:8765/ws (wss:// for TLS)",
    )
    p.add_argument(
        "--token",
        required=True,
        metavar="T",
        help="the room's secret token (8+ characters; the first to join sets it)",
    )
    add_source_options(p, multiple=True)
    add_codec_options(p)
    p.add_argument(
        "--stun",
        action="append",
        default=[],
        metavar="URL",
        help="STUN server (repeatable), e.g. stun:stun.l.google.com:19302; default none — needed across NAT",
    )
    p.add_argument(
        "--turn",
        action="append",
        default=[],
        metavar="URL",
        help="TURN server (repeatable), e.g. turn:host:3478",
    )
    p.add_argument("--turn-user", metavar="U", help="TURN username")
    p.add_argument("--turn-pass", metavar="P", help="TURN password")
    p.add_argument(
        "--ice-policy", choices=("all", "relay"), default="all", help="relay: send everything through TURN"
    )
    p.add_argument(
        "--ice-address",
        action="append",
        default=[],
        metavar="ADDR",
        help="offer only this local address (repeatable; e.g. 127.0.0.1 for a call on one machine, or "
        "the address of one network card); default: every non-loopback address",
    )
    audio = p.add_mutually_exclusive_group()
    audio.add_argument("--no-audio", action="store_true", help="send no voice")
    audio.add_argument(
        "--audio-in",
        metavar="DEVICE|FILE",
        help="voice from a file (looped) or FORMAT:DEVICE (alsa:default, pulse:default); default: the default microphone",
    )
    p.add_argument("--audio-out", metavar="FILE.wav", help="also write the other side's voice to a WAV file")
    p.add_argument(
        "--bus", default=None, metavar="ADDR", help="local bus (default $HOLO_BUS or tcp://127.0.0.1:7755)"
    )
    p.add_argument("--seconds", type=float, default=None, metavar="S", help="end the call after S seconds")
    p.add_argument(
        "--stats-json",
        metavar="FILE",
        help="at the end, write the summary and every received frame's latency",
    )
    p.add_argument(
        "--record",
        metavar="FILE.mcap",
        help="record the call from this side (both participants, voice, stats) to an MCAP file; a full "
        "disk stops the recording with a message, not the call",
    )
    p.add_argument(
        "--insecure-tls",
        action="store_true",
        help="accept any TLS certificate from the signaling server (testing)",
    )


def _check_replay_sources(specs: list[str]) -> None:
    """``replay:FILE.mcap[:PARTICIPANT]`` is checked here, before anything starts."""
    replays = [s for s in specs if s.startswith(REPLAY_PREFIX)]
    if not replays:
        return
    if len(specs) > 1:
        raise ConfigError("--source replay:FILE.mcap cannot be combined with other sources")
    from holo.record.play import split_replay_spec
    from holo.record.reader import RecordingReader

    path, _ = split_replay_spec(replays[0][len(REPLAY_PREFIX) :])
    # Opening checks that it is a readable MCAP file; a missing participant is reported by the
    # worker as soon as it has looked through the file.
    RecordingReader(path, recover=True).close()


def run_call(args: argparse.Namespace) -> int:
    from holo.capture_cli import capture_config
    from holo.cli import codec_options, default_participant, source_options

    if args.seconds is not None and args.seconds <= 0:
        raise ConfigError("--seconds must be positive")
    name = args.participant or default_participant()
    fps = args.fps if args.fps > 0 else 30.0
    specs = args.source or ["synthetic"]
    src_opts: SourceOptions = source_options(args)  # its fps is ``fps``, as above
    # A call's source runs in real time; the synthetic performer (no --source) loops.
    src_opts = replace(src_opts, loop=True if args.loop or not args.source else src_opts.loop, realtime=True)
    capture: CaptureConfig = capture_config(args)
    worker = WorkerConfig(
        sources=specs,
        source_options=src_opts,
        capture=capture,
        codec=args.codec,
        codec_options=codec_options(args),
        fps=fps,
        log_level=logging.getLogger().getEffectiveLevel(),
        participant=name,
    )
    _check_replay_sources(specs)
    options = CallOptions(
        room=args.room,
        signal_url=args.signal,
        token=args.token,
        name=name,
        worker=worker,
        bus_address=args.bus,
        stun=args.stun,
        turn=args.turn,
        turn_user=args.turn_user,
        turn_pass=args.turn_pass,
        ice_policy=args.ice_policy,
        ice_addresses=args.ice_address,
        audio=not args.no_audio,
        audio_in=args.audio_in,
        audio_out=args.audio_out,
        seconds=args.seconds,
        stats_json=args.stats_json,
        max_points=args.max_points,
        insecure_tls=args.insecure_tls,
        record=args.record,
    )
    _rtc_config(options)  # refuse bad ICE options before starting anything

    async def main() -> dict[str, Any]:
        # aiortc's audio threads and the workers' reader threads share the GIL with the event loop;
        # a short switch interval keeps the loop (SCTP, timers) from waiting 5 ms behind them.
        sys.setswitchinterval(0.0005)
        session = CallSession(options)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, session.stop)
        return await session.run()

    summary = asyncio.run(main())
    print(
        f"holo call: ended; sent {summary['frames_sent']} frames, received {summary['frames_received']}, "
        f"latency p50 {_fmt(summary['latency_p50_ms'])} ms / p95 {_fmt(summary['latency_p95_ms'])} ms"
    )
    return 0
