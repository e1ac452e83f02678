"""Recording sessions for research: MCAP files, as-live replay, export.

- :class:`Recorder` (``holo record``, ``holo call --record``): the bus into an MCAP file
  (:mod:`holo.record.writer`; channels and schemas in :mod:`holo.record.schemas`).
- :class:`RecordingReader`, :func:`summarize` (``holo info``): robust reading of whole, killed,
  truncated or corrupt files (:mod:`holo.record.reader`).
- :func:`play` (``holo play``) and :func:`iter_replay_packets` (``--source replay:``): as-live
  replay with the recorded timing (:mod:`holo.record.play`).
- :func:`export` (``holo export``): PLY, skeleton CSV, WAV, Foxglove MCAP (:mod:`holo.record.export`).
"""

from __future__ import annotations

from holo.record.export import ExportReport, export
from holo.record.play import iter_replay_packets, play, restamp_packet
from holo.record.reader import RecordedMessage, RecordingReader, RecordingSummary, format_summary, summarize
from holo.record.writer import Recorder, RecordingReport

__all__ = [
    "ExportReport",
    "RecordedMessage",
    "Recorder",
    "RecordingReader",
    "RecordingReport",
    "RecordingSummary",
    "export",
    "format_summary",
    "iter_replay_packets",
    "play",
    "restamp_packet",
    "summarize",
]
