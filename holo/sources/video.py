"""``video:FILE`` and ``webcam[:INDEX]`` — colour-only sources: a person hologram without depth.

Frames carry no depth (``RGBDFrame.has_depth`` is False); the capture pipeline builds the person's
relief from body tracking (:mod:`holo.relief`). The camera is assumed to be a pinhole with a 60°
horizontal field of view (a typical webcam or phone's main camera) unless ``--intrinsics`` gives it.

- ``video:FILE`` decodes any video PyAV (FFmpeg) reads — a phone clip, a screen recording —
  with timestamps from the file; ``--loop`` starts over; any ``--fps`` plays it at the file's own
  rate (its timestamps; the value itself is not used), else frames come as fast as they decode.
- ``webcam[:INDEX]`` opens a live camera with OpenCV (index 0 by default) at ``--size``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

import numpy as np

from holo.errors import CameraNotFoundError, SourceError
from holo.frame import Intrinsics, RGBDFrame
from holo.sources.base import FrameSource, SourceOptions, check_readable_file

__all__ = ["ASSUMED_FOV_DEG", "VideoSource", "WebcamSource", "open_video", "open_webcam"]

logger = logging.getLogger(__name__)

ASSUMED_FOV_DEG = 60.0


def _intrinsics(options: SourceOptions, width: int, height: int, what: str) -> Intrinsics:
    return options.intrinsics_for(width, height, what) or Intrinsics.from_fov(width, height, ASSUMED_FOV_DEG)


def _frame(rgb: np.ndarray, k: Intrinsics, t_ns: int, seq: int, serial: str) -> RGBDFrame:
    return RGBDFrame(
        depth_m=np.zeros(rgb.shape[:2], np.float32),
        color=rgb,
        intrinsics=k,
        capture_time_ns=t_ns,
        sequence=seq,
        serial=serial,
        has_depth=False,
    )


class VideoSource(FrameSource):
    kind = "video"

    def __init__(self, spec: str, options: SourceOptions, path: str) -> None:
        super().__init__(spec, options)
        self.path = check_readable_file(path, "video source")
        import av

        try:
            with av.open(self.path) as container:
                if not container.streams.video:
                    raise SourceError(f"video source: {self.path} has no video stream")
        except av.error.FFmpegError as exc:
            raise SourceError(
                f"video source: {self.path} is not a readable video ({exc.strerror or exc})"
            ) from None

    @property
    def serial(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0]

    def _frames(self) -> Iterator[RGBDFrame]:
        import av

        sequence = 0
        base_ns = time.time_ns()
        while True:
            start = time.monotonic()
            in_pass = 0  # frames of this pass: the fallback clock starts over with start and base_ns
            try:
                with av.open(self.path) as container:
                    stream = container.streams.video[0]
                    k = None
                    for frame in container.decode(stream):
                        rgb = frame.to_ndarray(format="rgb24")
                        if k is None:
                            k = _intrinsics(
                                self.options, rgb.shape[1], rgb.shape[0], f"video source {self.path}"
                            )
                        base = stream.time_base
                        has_time = frame.pts is not None and base is not None
                        t_s = float(frame.pts * base) if has_time else in_pass / 30.0  # type: ignore[operator]
                        if self.options.realtime:
                            delay = start + t_s - time.monotonic()
                            if delay > 0:
                                time.sleep(delay)
                        yield _frame(rgb, k, base_ns + round(t_s * 1e9), sequence, self.serial)
                        sequence += 1
                        in_pass += 1
            except av.error.FFmpegError as exc:
                raise SourceError(
                    f"video source: {self.path} is corrupt after frame {sequence} ({exc.strerror or exc})"
                ) from None
            if not in_pass:
                raise SourceError(
                    f"video source: {self.path} holds no decodable frame (truncated or corrupt)"
                )
            if not self.options.loop:
                return
            base_ns = time.time_ns()


class WebcamSource(FrameSource):
    kind = "webcam"

    def __init__(self, spec: str, options: SourceOptions, index: int) -> None:
        super().__init__(spec, options)
        import cv2

        self.index = index
        self._cap = cv2.VideoCapture(index)
        if not self._cap.isOpened():
            self._cap.release()
            raise CameraNotFoundError(
                f"no webcam at index {index} (is one plugged in? try --source webcam:1)"
            )
        w, h = options.size
        self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, w)
        self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, h)

    @property
    def serial(self) -> str:
        return f"webcam{self.index}"

    def _frames(self) -> Iterator[RGBDFrame]:
        import cv2

        sequence = 0
        k = None
        while True:
            ok, bgr = self._cap.read()
            if not ok:
                raise CameraNotFoundError(f"webcam {self.index} stopped sending frames (unplugged?)")
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if k is None:
                k = _intrinsics(self.options, rgb.shape[1], rgb.shape[0], f"webcam {self.index}")
            yield _frame(rgb, k, time.time_ns(), sequence, self.serial)
            sequence += 1

    def close(self) -> None:
        self._cap.release()


def open_video(arg: str | None, spec: str, options: SourceOptions) -> VideoSource:
    if not arg:
        raise SourceError("video source needs a file: --source video:FILE.mp4")
    return VideoSource(spec, options, arg)


def open_webcam(arg: str | None, spec: str, options: SourceOptions) -> WebcamSource:
    try:
        index = int(arg) if arg else 0
    except ValueError:
        raise SourceError(
            f"--source {spec!r}: the webcam index must be a number (webcam:0, webcam:1 ...)"
        ) from None
    return WebcamSource(spec, options, index)
