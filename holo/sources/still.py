"""``still:SRC`` — hold a recording's frames and deliver them as a live camera would.

The first frames of SRC (up to 60) are decoded once and kept in memory; they are then replayed in
a loop, paced at ``--fps`` (default 30) and stamped with the current time, exactly like frames
arriving from a camera. Benchmarks and tests use it to feed real recorded people into a call
without paying file decoding per frame: ``--source still:pcd:five_people.pcd``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

from holo.errors import SourceError
from holo.frame import RGBDFrame
from holo.sources.base import FrameSource, SourceOptions, open_source

__all__ = ["StillSource", "open_still"]

MAX_HELD_FRAMES = 60


class StillSource(FrameSource):
    kind = "still"

    def __init__(self, spec: str, options: SourceOptions, inner_spec: str) -> None:
        super().__init__(spec, options)
        inner_options = dataclasses.replace(options, loop=False, realtime=False)
        with open_source(inner_spec, inner_options) as inner:
            self._serial = inner.serial
            self.frames = [frame for _, frame in zip(range(MAX_HELD_FRAMES), inner)]
        if not self.frames:
            raise SourceError(f"still source: {inner_spec} gave no frames to hold")

    @property
    def serial(self) -> str:
        return self._serial

    def _frames(self) -> Iterator[RGBDFrame]:
        fps = self.options.fps if self.options.fps > 0 else 30.0
        start = time.monotonic()
        i = 0
        while True:
            delay = start + i / fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1.0:  # fell far behind (a paused process): do not burst to catch up
                start = time.monotonic() - i / fps
            held = self.frames[i % len(self.frames)]
            yield dataclasses.replace(held, capture_time_ns=time.time_ns(), sequence=i)
            i += 1


def open_still(arg: str | None, spec: str, options: SourceOptions) -> StillSource:
    if not arg:
        raise SourceError("still source needs another source to hold: --source still:pcd:FILE.pcd")
    return StillSource(spec, options, arg)
