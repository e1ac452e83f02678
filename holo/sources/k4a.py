"""Azure Kinect recordings (``k4arecorder``'s Matroska), read with PyAV and registered to colour.

``k4a:FILE.mkv`` plays the COLOR (MJPEG) and DEPTH (``b16g``: big-endian uint16 millimetres)
tracks; IR and IMU are ignored, as are depth images without a colour image. The factory calibration
is the file's ``calibration.json`` attachment, read as the Azure Kinect SDK reads it
(``calibration.c``, ``mode_specific_calibration.c``, ``intrinsic_transformation.c``):
``ModelParameters`` are cx, cy, fx, fy, k1..k6, codx, cody, p2, p1 (Brown–Conrady, which is
OpenCV's rational model k1 k2 p1 p2 k3 k4 k5 k6), normalised to the sensor's calibration image:
times the binned calibration resolution of the recorded mode, less the mode's crop offset, less
half a pixel. Each camera's ``Rt`` maps depth-camera points into that camera, translation in metres.

Depth is forward-projected into a pinhole camera with the colour camera's K scaled to
``output_width`` pixels (640×360 for 720p colour, about the depth camera's density); the colour
image is resized and undistorted into the same camera, so the frame's pinhole intrinsics are exact.
The nearest point wins where points collide, each point covers 2×2 pixels when the output is denser
than the depth image, holes with at least 5 of 8 valid neighbours take the nearest neighbour, and
depth is rounded to whole millimetres. ``SourceOptions.intrinsics`` replaces the output camera.
A recording without colour gives ``color=None`` and depth undistorted in the depth camera's own K.

``capture_time_ns`` is the container's ``creation_time`` (0 when absent) plus the depth packet's
presentation time; when looping, each pass adds the recording's length so time keeps increasing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import av
import cv2
import numpy as np

from holo.errors import IntrinsicsError, SourceError
from holo.frame import Intrinsics, RGBDFrame, depth_from_units
from holo.sources.base import FrameSource, SourceOptions, check_readable_file

__all__ = ["DEFAULT_OUTPUT_WIDTH", "DepthRegistration", "K4ASource", "open_k4a", "parse_calibration"]

logger = logging.getLogger(__name__)

#: Width in pixels of registered frames (the height follows the colour image's aspect ratio).
DEFAULT_OUTPUT_WIDTH = 640
# The SDK's mode tables: image size (colour: height) -> binned calibration resolution, crop offset.
_DEPTH_MODES = {(640, 576): (1024, 1024, 192, 180), (320, 288): (512, 512, 96, 90)}
_DEPTH_MODES |= {(512, 512): (512, 512, 0, 0), (1024, 1024): (1024, 1024, 0, 0)}
_COLOR_MODES = {720: (1280, 960, 0, 120), 1080: (1920, 1440, 0, 180), 1440: (2560, 1920, 0, 240)}
_COLOR_MODES |= {1536: (2048, 1536, 0, 0), 2160: (3840, 2880, 0, 360), 3072: (4096, 3072, 0, 0)}


class K4ACamera(NamedTuple):
    """One camera in the recorded mode: OpenCV K (pixels), distortion, and ``camera_from_depth``."""

    matrix: np.ndarray
    distortion: np.ndarray  # k1 k2 p1 p2 k3 k4 k5 k6
    rotation: np.ndarray
    translation_m: np.ndarray


def _numbers(value: Any, count: int, what: str) -> np.ndarray:
    ok = isinstance(value, list) and len(value) >= count and all(isinstance(v, int | float) for v in value)
    if not ok:
        raise ValueError(f"{what} must be a list of {count} numbers")
    return np.array(value[:count], dtype=np.float64)


def _camera(cameras: list[Any], location: str, size: tuple[int, int], color: bool) -> K4ACamera:
    cam = next((c for c in cameras if isinstance(c, dict) and c.get("Location") == location), None)
    if cam is None:
        raise ValueError(f"it has no camera at {location}")
    if (model := cam["Intrinsics"]["ModelType"]) != "CALIBRATION_LensDistortionModelBrownConrady":
        raise ValueError(f"camera {location} uses lens model {model!r}, not Brown–Conrady")
    params = _numbers(cam["Intrinsics"]["ModelParameters"], 14, f"{location} ModelParameters")
    cx, cy, fx, fy, k1, k2, k3, k4, k5, k6, _codx, _cody, p2, p1 = params  # cod: 0 for Brown–Conrady
    sensor = (int(cam["SensorWidth"]), int(cam["SensorHeight"]))
    if color and sensor[0] * 9 // 16 == sensor[1]:  # a legacy 16:9 calibration -> 4:3, as the SDK does
        cy, fy = (cy * 2304 + 384) / 3072, fy * 2304 / 3072
    if not color and sensor != (1024, 1024):
        raise ValueError(f"the depth calibration is for a {sensor[0]}×{sensor[1]} sensor, not 1024×1024")
    mode = _COLOR_MODES.get(size[1]) if color else _DEPTH_MODES.get(size)
    if mode is None:
        raise ValueError(f"no Azure Kinect mode makes {size[0]}×{size[1]} {'colour' if color else 'depth'}")
    bw, bh, ox, oy = mode
    if fx <= 0 or fy <= 0:
        raise ValueError(f"camera {location} has a focal length that is not positive")
    matrix = np.array([[fx * bw, 0, cx * bw - ox - 0.5], [0, fy * bh, cy * bh - oy - 0.5], [0, 0, 1]])
    rotation = _numbers(cam["Rt"]["Rotation"], 9, f"{location} Rt.Rotation").reshape(3, 3)
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-3):
        raise ValueError(f"camera {location}'s Rt.Rotation is not a rotation matrix")
    translation_m = _numbers(cam["Rt"]["Translation"], 3, f"{location} Rt.Translation")
    return K4ACamera(matrix, np.array([k1, k2, p1, p2, k3, k4, k5, k6]), rotation, translation_m)


def parse_calibration(
    data: bytes, depth_size: tuple[int, int], color_size: tuple[int, int] | None, where: str
) -> tuple[K4ACamera, K4ACamera | None]:
    """The depth and colour cameras of a ``calibration.json``, for the recorded image sizes."""
    try:
        cameras = json.loads(data)["CalibrationInformation"]["Cameras"]
        if not isinstance(cameras, list):
            raise ValueError("CalibrationInformation.Cameras is not a list")
        depth = _camera(cameras, "CALIBRATION_CameraLocationD0", depth_size, color=False)
        color = _camera(cameras, "CALIBRATION_CameraLocationPV0", color_size, True) if color_size else None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # JSONDecodeError is a ValueError
        problem = f"it has no {exc} entry" if isinstance(exc, KeyError) else str(exc)
        raise SourceError(f"{where}: the calibration attachment is malformed: {problem}") from None
    return depth, color


class DepthRegistration:
    """Forward-projects images of a ``depth`` camera into pinhole camera ``size``, ``matrix``.

    ``rt`` (3×4, metres) maps depth-camera points into the pinhole camera.
    """

    def __init__(self, depth: K4ACamera, wh: tuple[int, int], size: tuple[int, int], matrix: Any, rt: Any):
        w, h = wh
        u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        pixels = np.stack([u.ravel(), v.ravel()], axis=1).reshape(-1, 1, 2)
        stop = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-12)  # the default 5 passes: 4 px off
        xy = cv2.undistortPointsIter(pixels, depth.matrix, depth.distortion, np.eye(3), np.eye(3), stop)
        xy = xy.reshape(-1, 2)
        rays = np.concatenate([xy, np.ones((len(xy), 1))], axis=1)
        back, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), depth.matrix, depth.distortion)
        converged = np.linalg.norm(back.reshape(-1, 2) - pixels.reshape(-1, 2), axis=1) < 0.01
        self.coeffs = (matrix @ rt[:, :3] @ rays.T).astype(np.float32)  # (u·z, v·z, z) per metre
        self.coeffs[:, ~converged] = np.nan  # pixels whose ray is unknown never land
        self.offset = (matrix @ rt[:, 3]).astype(np.float32)  # rt: 3×4 output_from_depth, metres
        self.size = size
        self.splat = matrix[0, 0] > 0.75 * depth.matrix[0, 0]  # output denser than depth: 2×2 per point

    def __call__(self, depth_mm: np.ndarray) -> np.ndarray:
        """Metres (float32, 0 = no depth) in the output camera, from a depth image in millimetres."""
        (w, h), flat = self.size, depth_mm.ravel()
        valid = np.flatnonzero(flat)
        z_m = flat[valid].astype(np.float32) * np.float32(0.001)
        c, o = self.coeffs[:, valid], self.offset
        z = c[2] * z_m + o[2]
        with np.errstate(invalid="ignore", divide="ignore"):
            u, v = (c[0] * z_m + o[0]) / z, (c[1] * z_m + o[1]) / z
        out = np.full(w * h, np.inf, dtype=np.float32)
        for du, dv in ((0, 0), (1, 0), (0, 1), (1, 1)) if self.splat else ((0.5, 0.5),):
            with np.errstate(invalid="ignore"):
                uf, vf = np.floor(u + du), np.floor(v + dv)
                ok = (z > 0) & (uf >= 0) & (uf < w) & (vf >= 0) & (vf < h)
            np.minimum.at(out, (vf[ok] * w + uf[ok]).astype(np.int64), z[ok])
        image = out.reshape(h, w)
        hole = np.isinf(image)
        near = cv2.erode(image, np.ones((3, 3), np.uint8))  # the nearest of the 3×3 neighbours
        count = cv2.filter2D((~hole).astype(np.float32), -1, np.ones((3, 3)), borderType=cv2.BORDER_CONSTANT)
        fill = hole & (count >= 5)
        image[fill] = near[fill]
        image[np.isinf(image)] = 0
        return depth_from_units(np.round(image * 1000), 0.001)


def _track(container: Any, title: str) -> Any:
    return next((s for s in container.streams.video if s.metadata.get("title") == title), None)


def _start_ns(metadata: dict[str, str]) -> int:
    try:
        when = datetime.fromisoformat(metadata["creation_time"])
    except (KeyError, ValueError):
        return 0
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


class K4ASource(FrameSource):
    """Frames of one Azure Kinect recording, depth registered to the undistorted colour camera.

    ``output_width`` (0: :data:`DEFAULT_OUTPUT_WIDTH`) sets the registered frames' width.
    """

    kind = "k4a"

    def __init__(self, path: str, spec: str, options: SourceOptions, *, output_width: int = 0) -> None:
        super().__init__(spec, options)
        output_width = output_width or DEFAULT_OUTPUT_WIDTH
        self.path = check_readable_file(path, "k4a")
        self._where = f"k4a: {path}"
        container = self._open()
        try:
            self._setup(container, output_width)
        finally:
            container.close()

    def _open(self) -> Any:
        try:
            container = av.open(self.path)
        except (av.FFmpegError, OSError) as exc:
            problem = f"is not a Matroska file PyAV can open (or is cut short): {exc}"
            raise SourceError(f"{self._where} {problem}") from None
        if "matroska" not in container.format.name:
            container.close()
            raise SourceError(f"{self._where} is a {container.format.name} file, not a Matroska recording")
        return container

    def _setup(self, container: Any, output_width: int) -> None:
        depth, color = _track(container, "DEPTH"), _track(container, "COLOR")
        if depth is None:
            raise SourceError(f"{self._where} has no DEPTH track: not an Azure Kinect recording with depth")
        calibration = next((s for s in container.streams.attachments if _is_calibration(s)), None)
        if calibration is None:
            raise SourceError(f"{self._where} has no calibration.json attachment (k4arecorder embeds one)")
        self._depth_size = (depth.codec_context.width, depth.codec_context.height)
        color_size = (color.codec_context.width, color.codec_context.height) if color is not None else None
        if (tag := depth.codec_context.codec_tag) not in ("b16g", "\0\0\0\0"):
            raise SourceError(f"{self._where}: the DEPTH track's codec is {tag!r}, not b16g (uint16 BE)")
        if tag != "b16g":
            logger.warning("%s: the DEPTH track has no codec tag (remuxed?); reading it as b16g", self._where)
        data = bytes(calibration.data)
        depth_cam, color_cam = parse_calibration(data, self._depth_size, color_size, self._where)
        self._has_color = color_cam is not None
        own, own_size = (color_cam, color_size) if color_cam and color_size else (depth_cam, self._depth_size)
        try:
            own_k = Intrinsics(*own_size, *own.matrix[[0, 1, 0, 1], [0, 1, 2, 2]])
        except IntrinsicsError as exc:
            raise SourceError(f"{self._where}: the calibration attachment is implausible: {exc}") from None
        scale = output_width / own_size[0] if color_cam is not None else 1.0
        scaled_k = own_k.scaled(round(own_k.width * scale), round(own_k.height * scale))
        if isinstance(override := self.options.intrinsics, Intrinsics):
            self.intrinsics = override  # any size: the output camera is the reader's to choose
        else:  # (fx, fy, cx, cy) for the default size, or nothing
            k = self.options.intrinsics_for(scaled_k.width, scaled_k.height, self._where)
            self.intrinsics = k or scaled_k
        size = (self.intrinsics.width, self.intrinsics.height)
        rotation = own.rotation @ depth_cam.rotation.T  # own_from_depth (the SDK's depth Rt is identity)
        rt = np.column_stack([rotation, own.translation_m - rotation @ depth_cam.translation_m])
        self._register = DepthRegistration(depth_cam, self._depth_size, size, self.intrinsics.matrix, rt)
        if color_cam is not None:  # resize, then undistort into the output camera
            resized = own_k.scaled(*size).matrix
            out_k, dist = self.intrinsics.matrix, color_cam.distortion
            self._maps = cv2.initUndistortRectifyMap(resized, dist, np.eye(3), out_k, size, cv2.CV_16SC2)
        self._serial = container.metadata.get("K4A_DEVICE_SERIAL_NUMBER") or Path(self.path).stem
        self._start_ns = _start_ns(container.metadata)
        self._duration_us = container.duration or 0  # in AV_TIME_BASE: microseconds

    @property
    def serial(self) -> str:
        return self._serial

    def _captures(self, container: Any) -> Iterator[tuple[int, int, Any, Any]]:
        """(pts µs, frame period µs, colour packet or None, depth packet) of each capture.

        As in the SDK's playback, a colour and a depth image are one capture when their times are
        within half a frame period (k4arecorder gives each block the frame period as its duration).
        """
        depth, color = _track(container, "DEPTH"), _track(container, "COLOR") if self._has_color else None
        pending = None
        for packet in container.demux(*[s for s in (color, depth) if s is not None]):
            if packet.pts is None or packet.size == 0:
                continue
            pts_us = int(packet.pts * packet.time_base * 1_000_000)
            period_us = int((packet.duration or 0) * packet.time_base * 1_000_000) or 33_333
            if packet.stream is color:
                pending = (pts_us, packet)
            elif color is None:
                yield pts_us, period_us, None, packet
            elif pending is not None and abs(pending[0] - pts_us) <= period_us // 2:
                yield pts_us, period_us, pending[1], packet
                pending = None
            else:
                logger.debug("%s: depth image at %d µs has no colour image; skipped", self._where, pts_us)

    def _frame(self, color_packet: Any, depth_packet: Any, n: int, time_ns: int) -> RGBDFrame:
        w, h = self._depth_size
        if depth_packet.size != w * h * 2:
            raise SourceError(
                f"{self._where}: the depth image of frame {n} has {depth_packet.size} bytes, not {w * h * 2} "
                f"({w}×{h} 16-bit); the file is truncated or corrupt"
            )
        depth_m = self._register(np.frombuffer(depth_packet, dtype=">u2"))
        color = None
        if color_packet is not None:
            size = {"width": self.intrinsics.width, "height": self.intrinsics.height}
            try:
                decoded = color_packet.stream.codec_context.decode(color_packet)
                rgb = decoded[-1].to_ndarray(format="rgb24", interpolation="AREA", **size)
            except (av.FFmpegError, IndexError, ValueError) as exc:
                problem = f"the colour image of frame {n} cannot be decoded: {exc}"
                raise SourceError(f"{self._where}: {problem}") from None
            color = cv2.remap(rgb, self._maps[0], self._maps[1], cv2.INTER_LINEAR)
        return RGBDFrame(depth_m, color, self.intrinsics, time_ns, n, self._serial, 0.001)

    def _frames(self) -> Iterator[RGBDFrame]:
        sequence, offset_ns, paced_from = 0, 0, None
        while True:
            container, first_us, last_us, period_us = self._open(), None, None, 33_333
            try:
                for pts_us, period, color_packet, depth_packet in self._captures(container):
                    first_us, last_us, period_us = pts_us if first_us is None else first_us, pts_us, period
                    time_ns = self._start_ns + offset_ns + pts_us * 1000
                    frame = self._frame(color_packet, depth_packet, sequence, time_ns)
                    if self.options.realtime:
                        paced_from = time.monotonic_ns() - time_ns if paced_from is None else paced_from
                        time.sleep(max(0.0, (paced_from + time_ns - time.monotonic_ns()) / 1e9))
                    yield frame
                    sequence += 1
            except av.FFmpegError as exc:
                problem = f"is truncated or corrupt at frame {sequence}: {exc}"
                raise SourceError(f"{self._where} {problem}") from None
            finally:
                container.close()
            # A cut file keeps its header's duration: missing captures at the end mean truncation
            # (with slack for writers that count the last frame's duration in it).
            if (last_us or 0) + max(1.5 * period_us, 250_000) < self._duration_us:
                held = "no whole capture" if last_us is None else f"captures up to {last_us / 1e6:.3f} s"
                raise SourceError(
                    f"{self._where} is truncated or corrupt at frame {sequence}: it holds {held} "
                    f"but the recording lasts {self._duration_us / 1e6:.3f} s"
                )
            if not self.options.loop or first_us is None or last_us is None:  # no captures: do not spin
                return
            offset_ns += (last_us - first_us + period_us) * 1000


def _is_calibration(stream: Any) -> bool:
    return "K4A_CALIBRATION_FILE" in stream.metadata or stream.metadata.get("filename") == "calibration.json"


def open_k4a(arg: str | None, spec: str, options: SourceOptions) -> FrameSource:
    """``k4a:FILE.mkv``: an Azure Kinect recording."""
    if not arg:
        raise SourceError(f"k4a: name the recording to play, as k4a:FILE.mkv (got {spec!r})")
    return K4ASource(arg, spec, options)
