"""Fitting the stream to the link: how many points to send, from what the link delivered.

Once a second the sender feeds in what happened: frames offered and dropped for lack of room,
bytes handed to the data channel and how much is still queued, and what the receiver reported
(frames received, latency). The controller measures the link's throughput (bytes that left the
queue per second) when the link is what limits the stream — frames dropped for lack of room or a
standing queue — and then sets the point budget so that a frame's bytes, at the codec's current
bits per point, fit 80 % of it at the target frame rate (at most halving it per report). A receiver
reporting latency over 1.5x the target trims the budget by 15 %. With a healthy link (no drops,
short queue) the budget climbs back by 25 % per report up to the configured ceiling.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["AdaptiveBudget", "LinkReport", "SendGate"]


@dataclass(frozen=True, slots=True)
class LinkReport:
    seconds: float
    frames_offered: int
    frames_dropped: int
    bytes_sent: int
    queued_bytes_start: int
    queued_bytes_end: int
    bits_per_point: float
    receiver_latency_p95_ms: float | None = None


class AdaptiveBudget:
    def __init__(
        self,
        *,
        ceiling_points: int,
        floor_points: int = 5000,
        fps: float = 30.0,
        latency_target_ms: float = 100.0,
    ) -> None:
        self.ceiling = max(ceiling_points, floor_points)
        self.floor = floor_points
        self.fps = fps
        self.latency_target_ms = latency_target_ms
        self.points = self.ceiling
        self.throughput_bps: float | None = None

    def update(self, r: LinkReport) -> int:
        """The new point budget."""
        if r.seconds <= 0:
            return self.points
        delivered = r.bytes_sent - (r.queued_bytes_end - r.queued_bytes_start)
        frame_bytes = r.bytes_sent / max(r.frames_offered - r.frames_dropped, 1)
        # The link limits us only when frames are dropped for lack of room or a queue stands;
        # otherwise what was delivered is just what we chose to send, not the link's capacity.
        link_limited = (r.frames_offered > 0 and r.frames_dropped / r.frames_offered > 0.05) or (
            r.queued_bytes_end > 2 * frame_bytes + 64 * 1024
        )
        if link_limited and delivered > 0 and r.bits_per_point > 0:
            self.throughput_bps = delivered * 8 / r.seconds
            fitting = 0.8 * self.throughput_bps / self.fps / r.bits_per_point
            # Step towards the fitting budget, at most halving per report: one bad second (a
            # congestion window still opening, a burst of loss) must not throw away the picture.
            if self.points > fitting:
                self.points = int(max(self.floor, fitting, self.points * 0.5))
            else:  # still congested at a budget that should fit: the estimate is optimistic
                self.points = int(max(self.floor, self.points * 0.9))
        elif (
            r.receiver_latency_p95_ms is not None and r.receiver_latency_p95_ms > 1.5 * self.latency_target_ms
        ):
            self.points = int(max(self.floor, self.points * 0.85))
        elif r.frames_dropped == 0 and r.queued_bytes_end < 64 * 1024:
            self.points = int(min(self.ceiling, self.points * 1.25 + 1000))
        return self.points


class SendGate:
    """Decides, frame by frame, whether one more frame may join the data channel's queue.

    aiortc's SCTP only expires a partially reliable message once it has been sent, so bytes waiting
    in the send queue add their full wait to the latency. The gate measures how fast the queue drains
    (bytes handed to the channel minus bytes still queued, over the last ``window_s``) and lets a
    frame in only while what is queued ahead of it would leave within ``max_wait_s``; at least one
    frame may always wait. Before the first measurement it allows two frames plus 64 KiB.
    """

    def __init__(self, *, max_wait_s: float = 0.1, window_s: float = 1.0) -> None:
        self.max_wait_s = max_wait_s
        self.window_s = window_s
        self.sent_total = 0
        self._samples: deque[tuple[float, int]] = deque()

    def sent(self, nbytes: int) -> None:
        self.sent_total += nbytes

    def drain_rate(self) -> float | None:
        """Bytes per second that left the queue over the window, or None before a measurement."""
        if len(self._samples) < 2:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        if t1 - t0 < 0.25 * self.window_s:
            return None
        return max(0.0, (d1 - d0) / (t1 - t0))

    def admit(self, now: float, queued: int, frame_bytes: int) -> bool:
        """Record the queue's state at ``now`` and say whether a ``frame_bytes`` frame may be sent."""
        self._samples.append((now, self.sent_total - queued))
        while self._samples and now - self._samples[0][0] > self.window_s:
            self._samples.popleft()
        if queued == 0:
            return True
        rate = self.drain_rate()
        if rate is None:
            return queued <= 2 * frame_bytes + 64 * 1024
        return queued <= max(frame_bytes, rate * self.max_wait_s)
