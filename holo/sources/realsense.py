"""Intel RealSense cameras (``realsense[:SERIAL]``) and their recordings (``realsense:FILE.bag|.db3``).

Both go through librealsense; depth is aligned to colour (``rs.align``) and takes its intrinsics.
Lens distortion is ignored: RealSense colour streams report "inverse Brown-Conrady" with zero or
tiny coefficients (the camera rectifies in hardware), so the pinhole part is all there is.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from holo.errors import CameraNotFoundError, IntrinsicsError, MissingDependencyError, SourceError
from holo.frame import Intrinsics, RGBDFrame, depth_from_units
from holo.sources.base import FrameSource, SourceOptions, check_readable_file

__all__ = ["RECORDING_EXTENSIONS", "RealSenseSource", "open_realsense"]

logger = logging.getLogger(__name__)

#: ``.bag`` is ROS 1 (older librealsense, RealSense Viewer); librealsense 2.59 records ``.db3`` (ROS 2).
RECORDING_EXTENSIONS = (".bag", ".db3")
#: How long a live camera may stay silent before it counts as unplugged.
LIVE_TIMEOUT_MS = 5000
#: Playback polls this often, so the end of a file is noticed within a fraction of a second.
_POLL_MS = 100
#: A playback that says it is playing but yields nothing for this long is refused.
_PLAYBACK_STALL_S = 10.0
_NO_CAMERA = "plug one in or use --source realsense:FILE.bag"


def _import_rs() -> Any:
    try:
        import pyrealsense2 as rs
    except (ImportError, OSError) as exc:
        raise MissingDependencyError(
            "the realsense source needs pyrealsense2 (pip install pyrealsense2) and the system library "
            f"libusb-1.0-0 (apt install libusb-1.0-0); importing it failed: {exc}"
        ) from None
    return rs


def _reason(exc: BaseException) -> str:
    """librealsense's message without its 'Failed to resolve request ...' preamble."""
    text = str(exc).strip()
    if "No streams are selected" in text:
        return "it holds no video stream"
    return text.rpartition("Reason: ")[2] or type(exc).__name__


def open_realsense(arg: str | None, spec: str, options: SourceOptions) -> FrameSource:
    """``realsense[:SERIAL|FILE.bag|FILE.db3]``: a live camera (the first, or by serial) or a recording."""
    arg = (arg or "").strip() or None
    if arg is not None and (Path(arg).suffix or "/" in arg or os.sep in arg or os.path.exists(arg)):
        check_readable_file(arg, "RealSense recording")
        if Path(arg).suffix.lower() not in RECORDING_EXTENSIONS:
            raise SourceError(
                f"{arg}: not a RealSense recording; supported extensions are .bag (ROS 1, older "
                "librealsense and the RealSense Viewer) and .db3 (ROS 2, what librealsense 2.59 writes)"
            )
        return RealSenseSource(spec, options, path=arg)
    return RealSenseSource(spec, options, serial=arg)


class RealSenseSource(FrameSource):
    """Frames from a live RealSense camera or a librealsense recording, depth aligned to colour."""

    kind = "realsense"

    def __init__(
        self, spec: str, options: SourceOptions, *, path: str | None = None, serial: str | None = None
    ) -> None:
        super().__init__(spec, options)
        self._rs = rs = _import_rs()
        self._path, self._playback = path, None
        self._pipe: Any = None
        pipe, cfg = rs.pipeline(), rs.config()
        if path is not None:
            cfg.enable_device_from_file(path, repeat_playback=options.loop)
            try:  # set pacing before start(): set after it, the first frames are sometimes lost
                playback = cfg.resolve(rs.pipeline_wrapper(pipe)).get_device().as_playback()
                playback.set_real_time(options.realtime)
                profile = pipe.start(cfg)
            except RuntimeError as exc:
                raise SourceError(f"{path}: not a readable RealSense recording ({_reason(exc)})") from None
            device = profile.get_device()
            self._playback = device.as_playback()
            self._serial = self._info(device, "serial_number") or Path(path).stem
        else:
            device = self._find_device(serial)
            self._serial = self._info(device, "serial_number") or "realsense"
            (width, height), fps = options.size, round(options.fps)
            cfg.enable_device(self._serial)
            cfg.enable_stream(rs.stream.depth, width, height, rs.format.z16, fps)
            kinds = {p.stream_type() for s in device.query_sensors() for p in s.get_stream_profiles()}
            if rs.stream.color in kinds:
                cfg.enable_stream(rs.stream.color, width, height, rs.format.rgb8, fps)
            try:
                profile = pipe.start(cfg)
            except RuntimeError as exc:
                raise SourceError(
                    f"RealSense {self._serial}: no {width}x{height} {fps} fps mode ({_reason(exc)})"
                ) from None
        self._pipe = pipe
        try:
            self._configure(profile, device)
        except BaseException:
            self.close()
            raise
        logger.info("opened RealSense %s (%s, colour: %s)", self._serial, path or "live", self._has_color)

    def _configure(self, profile: Any, device: Any) -> None:
        """Alignment, depth scale and intrinsics of the started pipeline."""
        rs, name = self._rs, self._path or f"RealSense {self._serial}"
        videos = [s.as_video_stream_profile() for s in profile.get_streams() if s.is_video_stream_profile()]
        streams = {s.stream_type(): s for s in videos}
        depth, color = streams.get(rs.stream.depth), streams.get(rs.stream.color)
        if depth is None:
            raise SourceError(f"{name}: the RealSense stream has no depth")
        self._has_color = color is not None
        aligned = color is None or _registered(depth, color)
        self._align = None if aligned else rs.align(rs.stream.color)
        try:
            self._depth_scale = float(device.first_depth_sensor().get_depth_scale())
        except RuntimeError:
            self._depth_scale = 0.0  # read from each frame instead
        i = (color or depth).get_intrinsics()
        override = self.options.intrinsics_for(i.width, i.height, name)
        try:
            self._intrinsics = override or Intrinsics(i.width, i.height, i.fx, i.fy, i.ppx, i.ppy)
        except IntrinsicsError as exc:
            raise SourceError(f"{name}: implausible RealSense intrinsics: {exc}") from None

    def _info(self, device: Any, field: str) -> str | None:
        info = getattr(self._rs.camera_info, field)
        return str(device.get_info(info)) if device.supports(info) else None

    def _find_device(self, serial: str | None) -> Any:
        try:
            devices = list(self._rs.context().query_devices())
        except RuntimeError as exc:
            raise CameraNotFoundError(f"cannot list Intel RealSense cameras ({exc}); {_NO_CAMERA}") from None
        if not devices:
            raise CameraNotFoundError(
                f"no Intel RealSense camera is connected (pyrealsense2 found 0 devices); {_NO_CAMERA}"
            )
        serials = [self._info(d, "serial_number") for d in devices]
        if serial is not None and serial not in serials:
            found = ", ".join(map(str, serials))
            raise CameraNotFoundError(
                f"no Intel RealSense camera with serial {serial} is connected (found {found}); {_NO_CAMERA}"
            )
        return devices[serials.index(serial) if serial is not None else 0]

    @property
    def serial(self) -> str:
        return self._serial

    def _wait(self) -> Any | None:
        """The next frameset, or None at the end of a recording."""
        if self._playback is None:
            try:
                return self._pipe.wait_for_frames(LIVE_TIMEOUT_MS)
            except RuntimeError:
                raise CameraNotFoundError(
                    f"RealSense {self._serial} stopped sending frames (unplugged?)"
                ) from None
        limit_s = _PLAYBACK_STALL_S * (6 if self.options.realtime else 1)  # real time may pause
        stall = time.monotonic() + limit_s
        while True:
            ok, frames = self._pipe.try_wait_for_frames(_POLL_MS)
            if ok:
                return frames
            if self._playback.current_status() == self._rs.playback_status.stopped:
                ok, frames = self._pipe.try_wait_for_frames(_POLL_MS)  # drain a last frameset
                return frames if ok else None
            if time.monotonic() > stall:
                raise SourceError(f"{self._path}: playback stalled ({limit_s:g} s without a frame)")

    def _frames(self) -> Iterator[RGBDFrame]:
        if self._pipe is None:
            raise SourceError(f"{self.spec}: the RealSense source is closed")
        rs, sequence, last_number = self._rs, 0, -1
        epoch_domains = (rs.timestamp_domain.global_time, rs.timestamp_domain.system_time)
        try:
            while (frames := self._wait()) is not None:
                arrival_ns = time.time_ns()
                raw_depth = frames.get_depth_frame()
                if not raw_depth or (self._has_color and not frames.get_color_frame()):
                    continue  # a partial frameset (at a loop boundary, or a dropped frame)
                number = raw_depth.get_frame_number()
                if self._playback is not None and not self.options.loop and number < last_number:
                    break  # librealsense started over although looping is off: the end
                last_number = number
                if self._align is not None:
                    frames = self._align.process(frames)
                depth = frames.get_depth_frame()
                unit = self._depth_scale or float(depth.get_units())
                stamp = raw_depth.get_timestamp()
                epoch = raw_depth.get_frame_timestamp_domain() in epoch_domains and stamp > 0
                yield RGBDFrame(
                    depth_m=depth_from_units(np.asanyarray(depth.get_data()), unit),
                    color=_to_rgb(rs, frames.get_color_frame(), self._serial) if self._has_color else None,
                    intrinsics=self._intrinsics,
                    capture_time_ns=round(stamp * 1e6) if epoch else arrival_ns,  # epoch domains count ms
                    sequence=sequence,
                    serial=self._serial,
                    depth_unit_m=unit,
                )
                sequence += 1
        finally:
            self.close()

    def close(self) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            try:
                pipe.stop()
            except RuntimeError as exc:  # already stopped, or the device is gone
                logger.debug("stopping RealSense %s: %s", self.spec, exc)


def _registered(depth: Any, color: Any) -> bool:
    """True when depth already lies on the colour pixels (same intrinsics, identity extrinsics).

    A D405 (colour from the depth imager) or a recording made after alignment is like that, and
    ``rs.align`` would only damage it: its rounding moves ~1 % of the pixels by one, leaving holes.
    """
    try:
        ext = depth.get_extrinsics_to(color)
    except RuntimeError:
        return False
    a, b = depth.get_intrinsics(), color.get_intrinsics()
    return bool(
        (a.width, a.height, a.model) == (b.width, b.height, b.model)
        and np.allclose([a.fx, a.fy, a.ppx, a.ppy], [b.fx, b.fy, b.ppx, b.ppy], atol=1e-3)
        and np.allclose(a.coeffs, b.coeffs, atol=1e-6)
        and np.allclose(ext.rotation, np.eye(3).ravel(), atol=1e-6)
        and np.allclose(ext.translation, 0.0, atol=1e-6)
    )


def _to_rgb(rs: Any, frame: Any, serial: str) -> np.ndarray:
    """An HxWx3 RGB uint8 copy of a colour frame (librealsense reuses the frame's memory)."""
    fmt = frame.get_profile().format()
    rgb, bgr = [0, 1, 2], [2, 1, 0]
    order = {rs.format.rgb8: rgb, rs.format.rgba8: rgb, rs.format.bgr8: bgr, rs.format.bgra8: bgr}.get(fmt)
    if order is None:
        raise SourceError(f"{serial}: RealSense colour format {fmt} is not supported (record rgb8 or bgr8)")
    return np.ascontiguousarray(np.asanyarray(frame.get_data())[..., order])
