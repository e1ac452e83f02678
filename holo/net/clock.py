"""Clock offset between two peers from NTP-style ping exchanges.

A ping carries the sender's send time t1; the peer stamps its receive time t2 and reply time t3;
the sender stamps the reply's arrival t4 (all ``time.time_ns()`` on their own machine). Then::

    offset = ((t2 - t1) + (t3 - t4)) / 2      (remote clock minus local clock)
    rtt    = (t4 - t1) - (t3 - t2)

The estimate is the offset of the sample with the smallest round trip among the last ``window``
samples — queueing delay only ever adds to a round trip, so the fastest exchange is the most
symmetric one (as NTP's clock filter does).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["ClockSample", "OffsetEstimator"]


@dataclass(frozen=True, slots=True)
class ClockSample:
    offset_ns: int
    rtt_ns: int


class OffsetEstimator:
    def __init__(self, window: int = 32) -> None:
        self._samples: deque[ClockSample] = deque(maxlen=window)

    def add(self, t1_ns: int, t2_ns: int, t3_ns: int, t4_ns: int) -> ClockSample | None:
        rtt = (t4_ns - t1_ns) - (t3_ns - t2_ns)
        if rtt < 0 or t4_ns < t1_ns:
            return None  # impossible: a clock jumped or the reply is bogus
        sample = ClockSample(offset_ns=((t2_ns - t1_ns) + (t3_ns - t4_ns)) // 2, rtt_ns=rtt)
        self._samples.append(sample)
        return sample

    @property
    def ready(self) -> bool:
        return bool(self._samples)

    @property
    def best(self) -> ClockSample | None:
        return min(self._samples, key=lambda s: s.rtt_ns) if self._samples else None

    @property
    def offset_ns(self) -> int:
        best = self.best
        return best.offset_ns if best else 0

    @property
    def rtt_ns(self) -> int | None:
        """The latest round trip (for stats), not the filtered one."""
        return self._samples[-1].rtt_ns if self._samples else None

    def to_local_ns(self, remote_ns: int) -> int:
        """A remote timestamp expressed on the local clock."""
        return remote_ns - self.offset_ns
