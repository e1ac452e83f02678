"""SCTP retransmission timers suited to real-time media, as browsers set them.

aiortc's SCTP follows RFC 4960's conservative timers: a minimum retransmission timeout (RTO) of
1 s and an initial one of 3 s. On a lossy link a lost tail chunk then freezes the cloud channel for
at least a second, and each timeout also collapses the congestion window. libwebrtc's SCTP (dcsctp)
uses 220 ms / 500 ms / 800 ms (min / initial / max RTO) for WebRTC data channels; Holo does the
same. 220 ms stays above any peer's delayed-ACK timer (aiortc acknowledges at once, browsers
within 200 ms). aiortc reads these module constants when it computes a timeout, so setting them
once per process is enough.
"""

from __future__ import annotations

__all__ = ["INIT_RETRIES", "RTO_INITIAL_S", "RTO_MAX_S", "RTO_MIN_S", "use_realtime_timers"]

RTO_MIN_S = 0.22
RTO_INITIAL_S = 0.5
RTO_MAX_S = 0.8
INIT_RETRIES = 20


def use_realtime_timers() -> None:
    import aiortc.rtcsctptransport as sctp

    sctp.SCTP_RTO_MIN = RTO_MIN_S  # type: ignore[assignment]
    sctp.SCTP_RTO_INITIAL = RTO_INITIAL_S
    sctp.SCTP_RTO_MAX = RTO_MAX_S  # type: ignore[assignment]
    # T1 (association set-up) retries every RTO without back-off: keep its total patience ~10 s.
    sctp.SCTP_MAX_INIT_RETRANS = INIT_RETRIES
