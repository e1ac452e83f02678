"""Write real librealsense recordings from still images, for tests (not product code).

What we learned making them with pyrealsense2 2.59 (``software_device`` + ``recorder``):

- ``rs.recorder(path, software_device)`` only writes ROS 2 ``.db3`` (SQLite) files; a ``.bag`` name
  raises ``RuntimeError: Output file must have .db3 extension``. 2.59 still *reads* ROS 1 ``.bag``.
- Wrap the device in the recorder *before* opening/starting its sensors; frames pushed with
  ``sensor.on_video_frame`` on the original ``software_sensor`` objects are then recorded.
  A sensor needs a sink to start (a ``frame_queue``); nobody has to read it.
- Stream ``uid`` must be unique across sensors. Give the depth sensor a read-only
  ``depth_units`` option (playback's ``first_depth_sensor().get_depth_scale()`` reads it) and set
  ``depth_units`` on every depth frame.
- ``register_extrinsics_to`` depth -> colour, or playback has no extrinsics
  ("Requested extrinsics are not available!"; ``rs.align`` still runs, as if identity).
- The file is complete only once the sensors are stopped/closed, ``recorder.pause()`` was called
  and the recorder object is gone (``del``). Depth is stored losslessly (``compressedDepth``),
  colour too: both read back bit-exact.
- Frame timestamps and domain (``system_time`` here: ms since the epoch) are kept as written; the
  playback clock ("duration", real-time pacing) is the wall time it took to *write* the file.
"""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pyrealsense2 as rs

#: Start of the recorded timestamps (ms since the Unix epoch, 2023-11-14) and the frame period.
T0_MS = 1_700_000_000_000.0
PERIOD_MS = 1000.0 / 30.0


def _intrinsics(width: int, height: int, fx: float, cx: float, cy: float) -> rs.intrinsics:
    intr = rs.intrinsics()
    intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy = width, height, fx, fx, cx, cy
    intr.model, intr.coeffs = rs.distortion.none, [0.0] * 5
    return intr


def _stream(kind: rs.stream, uid: int, fmt: rs.format, bpp: int, intr: rs.intrinsics) -> rs.video_stream:
    vs = rs.video_stream()
    vs.type, vs.index, vs.uid, vs.fmt, vs.bpp, vs.fps = kind, 0, uid, fmt, bpp, 30
    vs.width, vs.height, vs.intrinsics = intr.width, intr.height, intr
    return vs


def write_recording(
    path: Path,
    depth_mm: np.ndarray,
    color_rgb: np.ndarray | None = None,
    *,
    frames: int = 4,
    fx: float = 525.0,
    color_scale: float = 1.0,
    translation_m: tuple[float, float, float] = (0.0, 0.0, 0.0),
    domain: rs.timestamp_domain = rs.timestamp_domain.system_time,
    serial: str = "123456789",
) -> list[float]:
    """Record ``frames`` copies of a depth (+ colour) image; return the timestamps written (ms).

    Depth intrinsics are ``fx = fy``, centred principal point. The colour camera has the same
    intrinsics scaled by ``color_scale`` (``color_rgb`` must already have that size) and sits at
    ``translation_m`` from the depth camera, with no rotation.
    """
    h, w = depth_mm.shape
    depth_intr = _intrinsics(w, h, fx, (w - 1) / 2, (h - 1) / 2)
    device = rs.software_device()
    device.register_info(rs.camera_info.serial_number, serial)
    device.register_info(rs.camera_info.name, "Holo test recording (software device)")
    depth_sensor = device.add_sensor("Depth")
    depth_sensor.add_read_only_option(rs.option.depth_units, 0.001)
    depth_profile = depth_sensor.add_video_stream(
        _stream(rs.stream.depth, 0, rs.format.z16, 2, depth_intr)
    ).as_video_stream_profile()
    pushes = [(depth_sensor, depth_profile, np.ascontiguousarray(depth_mm, dtype=np.uint16), 2)]
    if color_rgb is not None:
        ch, cw = color_rgb.shape[:2]
        s = color_scale
        color_intr = _intrinsics(cw, ch, fx * s, ((w - 1) / 2 + 0.5) * s - 0.5, ((h - 1) / 2 + 0.5) * s - 0.5)
        color_sensor = device.add_sensor("Color")
        color_profile = color_sensor.add_video_stream(
            _stream(rs.stream.color, 1, rs.format.rgb8, 3, color_intr)
        ).as_video_stream_profile()
        extrinsics = rs.extrinsics()
        extrinsics.rotation, extrinsics.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], list(translation_m)
        depth_profile.register_extrinsics_to(color_profile, extrinsics)
        pushes.append((color_sensor, color_profile, np.ascontiguousarray(color_rgb, dtype=np.uint8), 3))

    recorder = rs.recorder(str(path), device)
    sink = rs.frame_queue(2 * frames + 2)
    for sensor, profile, _, _ in pushes:
        sensor.open(profile)
        sensor.start(sink)
    stamps = [T0_MS + n * PERIOD_MS for n in range(frames)]
    for n, stamp in enumerate(stamps):
        for sensor, profile, pixels, bpp in pushes:
            frame = rs.software_video_frame()
            frame.pixels, frame.bpp, frame.stride = pixels, bpp, pixels.shape[1] * bpp
            frame.timestamp, frame.domain, frame.frame_number, frame.profile = stamp, domain, n, profile
            if bpp == 2:
                frame.depth_units = 0.001
            sensor.on_video_frame(frame)
    for sensor, _, _, _ in pushes:
        sensor.stop()
        sensor.close()
    recorder.pause()
    del recorder, sink, pushes
    gc.collect()
    return stamps
