"""As-live replay: a recording back onto the bus with its recorded timing (``holo play``), and a
recorded participant as a packet source for a live call (:func:`iter_replay_packets`).

Timing policy. Each message is due at ``start + (log_time - first log_time) / speed`` on the
monotonic clock. Messages are read ahead (up to ``LOOKAHEAD`` of them, only while the next one is
more than a few milliseconds away) so that decompressing a chunk never delays a due message. A
message that is nonetheless late goes out at once; if it is later than ``MAX_LATE_S`` (50 ms —
the machine stalled), the schedule is re-anchored on it: everything after shifts by that lateness
instead of bursting out to catch up, so inter-frame spacing is kept. Re-anchors are counted.

``--from``/``--to`` are seconds after the recording's first message. Clouds start, per
participant, at the first keyframe at or after ``--from`` (a decoder cannot start mid-GOP).
``--loop`` starts over after the last message (one median frame interval later).

Played clouds are the recorded bytes, unchanged; ``restamp`` instead gives each cloud the
current time as capture time and renumbers its sequence per participant (header patched, CRC
recomputed; nothing is re-encoded), for consumers that measure latency against capture time.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from holo.bus import Bus
from holo.codec.packet import FLAG_KEYFRAME, MAGIC, Packet
from holo.errors import PacketError, RecordingError
from holo.record.reader import RecordedMessage, RecordingReader

__all__ = [
    "LOOKAHEAD",
    "MAX_LATE_S",
    "Pacer",
    "PlayReport",
    "iter_replay_packets",
    "play",
    "restamp_packet",
    "split_replay_spec",
]

logger = logging.getLogger(__name__)

MAX_LATE_S = 0.05
LOOKAHEAD = 64
_READ_AHEAD_MARGIN_S = 0.004


class Pacer:
    """Releases messages at their recorded offsets / speed (see the module docstring's policy)."""

    def __init__(self, speed: float = 1.0, *, max_late_s: float = MAX_LATE_S) -> None:
        if not 0.01 <= speed <= 100:
            raise RecordingError(f"playback speed must be between 0.01 and 100, got {speed:g}")
        self.speed = speed
        self.max_late_s = max_late_s
        self.reanchors = 0
        self.shifted_s = 0.0
        self._origin_mono: float | None = None
        self._origin_ns = 0

    def restart(self, log_time_ns: int, at_mono: float | None = None) -> None:
        self._origin_ns = log_time_ns
        self._origin_mono = time.monotonic() if at_mono is None else at_mono

    def due(self, log_time_ns: int) -> float:
        """The monotonic time ``log_time_ns`` is due (starting the schedule on the first call)."""
        if self._origin_mono is None:
            self.restart(log_time_ns)
        assert self._origin_mono is not None
        return self._origin_mono + max(0, log_time_ns - self._origin_ns) / 1e9 / self.speed

    def wait(self, log_time_ns: int) -> None:
        due = self.due(log_time_ns)
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        elif now - due > self.max_late_s:
            assert self._origin_mono is not None
            self._origin_mono += now - due
            self.reanchors += 1
            self.shifted_s += now - due


def restamp_packet(
    data: bytes, *, sequence: int, capture_time_ns: int | None = None, participant: str | None = None
) -> bytes:
    """``data`` with a new sequence, capture time (default: now) and optionally participant; CRC recomputed."""
    packet = Packet.parse(data)
    changed = replace(
        packet,
        sequence=sequence & 0xFFFFFFFF,
        capture_time_ns=time.time_ns() if capture_time_ns is None else capture_time_ns,
        participant=participant or packet.participant,
    )
    return bytes(changed)


def _is_keyframe(data: bytes) -> bool:
    return len(data) >= 8 and data[:4] == MAGIC and bool(int.from_bytes(data[6:8], "big") & FLAG_KEYFRAME)


class TimeWindow:
    """--from/--to and keyframe gating over one pass of a recording."""

    def __init__(self, from_s: float | None, to_s: float | None) -> None:
        if from_s is not None and from_s < 0:
            raise RecordingError(f"--from must be 0 s or later, got {from_s:g}")
        if from_s is not None and to_s is not None and to_s <= from_s:
            raise RecordingError(f"--to ({to_s:g} s) must be after --from ({from_s:g} s)")
        self.from_ns = int((from_s or 0.0) * 1e9)
        self.to_ns = int(to_s * 1e9) if to_s is not None else None
        self._started: set[str] = set()

    def reset(self) -> None:
        self._started.clear()

    def admit(self, m: RecordedMessage, first_ns: int) -> bool | None:
        """True to play, False to skip, None when past --to (stop)."""
        offset = m.log_time_ns - first_ns
        if self.to_ns is not None and offset > self.to_ns:
            return None
        if offset < self.from_ns:
            return False
        if m.kind == "cloud" and m.participant not in self._started:
            if not _is_keyframe(m.data):
                return False
            self._started.add(m.participant)
        return True


@dataclass(frozen=True, slots=True)
class PlayReport:
    messages: int
    passes: int
    played_s: float
    recording_s: float
    dropped: int  # messages the bus could not take (a subscriber too slow)
    reanchors: int
    shifted_s: float
    damage: tuple[str, ...]


def play(
    path: str,
    *,
    bus_address: str | None = None,
    bus: Bus | None = None,
    speed: float = 1.0,
    loop: bool = False,
    from_s: float | None = None,
    to_s: float | None = None,
    topics: Sequence[str] | None = None,
    restamp: bool = False,
    settle_s: float = 0.5,
    stop: Callable[[], bool] | None = None,
) -> PlayReport:
    """Publish a recording onto the bus as-live; returns when it ends (or ``stop()`` is true)."""
    pacer = Pacer(speed)
    window = TimeWindow(from_s, to_s)
    reader = RecordingReader(path, recover=True)
    own_bus = bus is None
    bus = bus or Bus(bus_address)
    publisher = bus.publisher()
    sequences: dict[str, int] = {}
    played = passes = 0
    started = time.monotonic()
    damage: list[str] = []
    try:
        time.sleep(settle_s)  # let subscriptions reach this new publisher (ZMQ's slow joiner)
        while True:
            passes += 1
            window.reset()
            count_before = played
            messages = reader.messages(topics)
            buffer: deque[RecordedMessage] = deque()
            exhausted = False
            first_in_pass = True
            while True:
                if stop is not None and stop():
                    return _report(played, passes, started, reader, publisher.stats.dropped, pacer, damage)
                if not buffer:
                    m = next(messages, None)
                    if m is None:
                        break
                    buffer.append(m)
                m = buffer[0]
                first_ns = reader.first_log_ns or m.log_time_ns
                verdict = window.admit(m, first_ns)
                if verdict is None:
                    break
                if not verdict:
                    buffer.popleft()
                    continue
                if first_in_pass:
                    pacer.restart(m.log_time_ns)
                    first_in_pass = False
                due = pacer.due(m.log_time_ns)
                while (
                    not exhausted
                    and len(buffer) < LOOKAHEAD
                    and due - time.monotonic() > _READ_AHEAD_MARGIN_S
                ):
                    nxt = next(messages, None)
                    if nxt is None:
                        exhausted = True
                    else:
                        buffer.append(nxt)
                pacer.wait(m.log_time_ns)
                payload = m.data
                if restamp and m.kind == "cloud":
                    n = sequences.get(m.participant, 0)
                    sequences[m.participant] = n + 1
                    try:
                        payload = restamp_packet(payload, sequence=n)
                    except PacketError as exc:
                        logger.warning("left a damaged packet on %s as recorded: %s", m.topic, exc)
                publisher.send(m.topic, payload)
                played += 1
                buffer.popleft()
            messages.close()
            if passes == 1:
                damage = [d.reason for d in reader.damage]  # reported, not logged: the caller says it
            if not loop or played == count_before:
                break
            time.sleep(1 / 30 / speed)
        return _report(played, passes, started, reader, publisher.stats.dropped, pacer, damage)
    finally:
        reader.close()
        if own_bus:
            time.sleep(0.2)  # let the last messages leave before the socket closes
            bus.close()


def _report(
    played: int,
    passes: int,
    started: float,
    reader: RecordingReader,
    dropped: int,
    pacer: Pacer,
    damage: list[str],
) -> PlayReport:
    return PlayReport(
        messages=played,
        passes=passes,
        played_s=time.monotonic() - started,
        recording_s=reader.duration_s,
        dropped=dropped,
        reanchors=pacer.reanchors,
        shifted_s=pacer.shifted_s,
        damage=tuple(damage),
    )


def split_replay_spec(arg: str) -> tuple[str, str | None]:
    """``FILE.mcap[:PARTICIPANT]`` (the argument of ``--source replay:...``) as (path, participant)."""
    if os.path.exists(arg):
        return arg, None
    path, sep, participant = arg.rpartition(":")
    if sep and path and participant and "/" not in participant:
        return path, participant
    return arg, None


def iter_replay_packets(
    path: str,
    participant: str | None = None,
    *,
    speed: float = 1.0,
    loop: bool = False,
    restamp: bool = True,
    rename: str | None = None,
    from_s: float | None = None,
    to_s: float | None = None,
) -> Iterator[bytes]:
    """A recorded participant's packets, each yielded at its recorded pace (for ``--source replay:``).

    ``participant`` None takes the first participant whose clouds the file holds. With ``restamp``
    each packet gets the current time as capture time and a sequence counting from 0 (continuing
    across loops); ``rename`` also replaces the participant name inside the packet. Damaged packets
    are skipped with a warning; a recording without that participant raises :class:`RecordingError`.
    """
    pacer = Pacer(speed)
    window = TimeWindow(from_s, to_s)
    sequence = 0
    intervals: list[int] = []
    warned = False
    with RecordingReader(path, recover=True) as reader:
        chosen = participant
        while True:
            window.reset()
            yielded_in_pass = 0
            first_in_pass = True
            last_ns: int | None = None
            seen: set[str] = set()
            for m in reader.messages():
                if m.kind != "cloud":
                    continue
                seen.add(m.participant)
                if chosen is None:
                    chosen = m.participant
                    logger.info("replaying participant %s from %s", chosen, path)
                if m.participant != chosen:
                    continue
                verdict = window.admit(m, reader.first_log_ns or m.log_time_ns)
                if verdict is None:
                    break
                if not verdict:
                    continue
                if first_in_pass:
                    pacer.restart(m.log_time_ns)
                    first_in_pass = False
                if last_ns is not None and len(intervals) < 300:
                    intervals.append(m.log_time_ns - last_ns)
                last_ns = m.log_time_ns
                pacer.wait(m.log_time_ns)
                data = m.data
                try:
                    if restamp:
                        data = restamp_packet(data, sequence=sequence, participant=rename)
                    elif rename:
                        data = bytes(replace(Packet.parse(data), participant=rename))
                except PacketError as exc:
                    logger.warning("skipped a damaged packet of %s in %s: %s", chosen, path, exc)
                    continue
                sequence += 1
                yielded_in_pass += 1
                yield data
            if not warned and reader.damage:
                warned = True
                for d in reader.damage:
                    logger.warning("replaying the readable part of %s: %s", path, d.reason)
            if yielded_in_pass == 0:
                if sequence == 0:
                    others = ", ".join(sorted(seen)) or "no participants"
                    what = f"participant {chosen!r}" if chosen else "any participant"
                    raise RecordingError(f"{path} holds no clouds of {what} (it holds: {others})")
                return
            if not loop:
                return
            gap_ns = statistics.median(intervals) if intervals else 1e9 / 30
            time.sleep(gap_ns / 1e9 / speed)
