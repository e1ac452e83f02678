"""``pcd:FILE`` — an organised PCD point cloud (one camera frame, as PCL and OpenNI write them).

The file is read with Open3D (ASCII, binary and LZF ``binary_compressed``). An organised cloud
(``HEIGHT`` > 1) keeps one point per pixel with NaN where the camera saw nothing, so it *is* a
range image: depth is its ``z``, colour its ``rgb``/``rgba``, and the pinhole intrinsics are
recovered exactly by a least-squares fit of ``u = fx x/z + cx`` and ``v = fy y/z + cy`` over the
valid points (``--intrinsics`` overrides). Depth is quantised back to the file's evident step
(millimetres for Kinect-era PCL files). A PCD without colour gives frames with no colour.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import numpy as np

from holo.errors import IntrinsicsError, SourceError
from holo.frame import Intrinsics, RGBDFrame, depth_from_units
from holo.sources.base import FrameSource, SourceOptions, check_readable_file

__all__ = ["PCDSource", "fit_intrinsics", "open_pcd", "read_organized_pcd"]

logger = logging.getLogger(__name__)


def _header(path: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    with open(path, "rb") as f:
        for _ in range(20):
            line = f.readline(4096)
            if not line:
                break
            text = line.decode("ascii", errors="replace").strip()
            if not text or text.startswith("#"):
                continue
            key, _, value = text.partition(" ")
            fields[key.upper()] = value.strip()
            if key.upper() == "DATA":
                break
    return fields


def fit_intrinsics(points: np.ndarray, width: int, height: int) -> Intrinsics:
    """Pinhole intrinsics that best reproduce an organised cloud's pixel grid (N = width*height)."""
    pts = points.reshape(height, width, 3)
    v, u = np.mgrid[0:height, 0:width]
    z = pts[..., 2]
    ok = np.isfinite(z) & (z > 0)
    if ok.sum() < 100:
        raise IntrinsicsError("too few valid points to recover the camera intrinsics; pass --intrinsics")
    a = pts[..., 0][ok] / z[ok]
    b = pts[..., 1][ok] / z[ok]
    fx, cx = np.linalg.lstsq(np.stack([a, np.ones_like(a)], 1), u[ok].astype(np.float64), rcond=None)[0]
    fy, cy = np.linalg.lstsq(np.stack([b, np.ones_like(b)], 1), v[ok].astype(np.float64), rcond=None)[0]
    # Float32 storage leaves ~1e-8 relative noise in the fit: round it away.
    return Intrinsics(
        width=width,
        height=height,
        fx=round(float(fx), 4),
        fy=round(float(fy), 4),
        cx=round(float(cx), 4),
        cy=round(float(cy), 4),
    )


def read_organized_pcd(path: str) -> tuple[np.ndarray, np.ndarray | None, int, int]:
    """(points N x 3 float32 with NaN kept, colours N x 3 uint8 or None, width, height)."""
    check_readable_file(path, "pcd source")
    head = _header(path)
    if "FIELDS" not in head or "DATA" not in head:
        raise SourceError(f"pcd source: {path} is not a PCD file (no FIELDS/DATA header)")
    try:
        width, height = int(head.get("WIDTH", "0")), int(head.get("HEIGHT", "0"))
    except ValueError:
        raise SourceError(f"pcd source: {path} has a malformed WIDTH/HEIGHT header") from None
    if height <= 1:
        raise SourceError(
            f"pcd source: {path} is an unorganised cloud (HEIGHT {height}); a camera frame needs an organised "
            "PCD (one point per pixel)"
        )
    if not (1 <= width <= 16384 and height <= 16384):
        raise SourceError(f"pcd source: {path} claims {width}×{height} points per frame, which no camera has")
    import open3d as o3d

    previous = o3d.utility.get_verbosity_level()
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    try:
        cloud = o3d.t.io.read_point_cloud(path, remove_nan_points=False, remove_infinite_points=False)  # type: ignore[arg-type]
    except RuntimeError as exc:
        raise SourceError(f"pcd source: {path} could not be read: {exc}") from None
    finally:
        o3d.utility.set_verbosity_level(previous)
    if "positions" not in cloud.point or len(cloud.point.positions) != width * height:
        got = len(cloud.point.positions) if "positions" in cloud.point else 0
        raise SourceError(
            f"pcd source: {path} is truncated or corrupt (expected {width}×{height} = {width * height} points, read {got})"
        )
    points = cloud.point.positions.numpy().astype(np.float32, copy=False)
    colors = None
    if "colors" in cloud.point:
        colors = cloud.point.colors.numpy()
        if colors.dtype != np.uint8:
            colors = np.clip(colors * 255.0 if colors.max() <= 1.0 else colors, 0, 255).astype(np.uint8)
    return points, colors, width, height


class PCDSource(FrameSource):
    kind = "pcd"

    def __init__(self, spec: str, options: SourceOptions, path: str) -> None:
        super().__init__(spec, options)
        self.path = path
        check_readable_file(path, "pcd source")

    @property
    def serial(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0]

    def _frames(self) -> Iterator[RGBDFrame]:
        sequence = 0
        frame_ns = int(os.path.getmtime(self.path) * 1e9)
        intrinsics: Intrinsics | None = None
        while True:  # a looped file is read (and decoded) again each time, as a camera would deliver it
            points, colors, width, height = read_organized_pcd(self.path)
            if intrinsics is None:
                intrinsics = self.options.intrinsics_for(
                    width, height, f"pcd source {self.path}"
                ) or fit_intrinsics(points, width, height)
            z = points[:, 2].reshape(height, width)
            depth = np.where(np.isfinite(z) & (z > 0), z, np.float32(0)).astype(np.float32)
            # Kinect-era files store millimetre steps; put the floats back on that grid.
            valid = depth[depth > 0]
            unit = 0.001
            if len(valid) and np.abs(valid * 1000 - np.round(valid * 1000)).max() < 0.01:
                depth = depth_from_units(np.round(depth * 1000), 0.001)
            else:
                unit = 0.0001
            yield RGBDFrame(
                depth_m=depth,
                color=colors.reshape(height, width, 3) if colors is not None else None,
                intrinsics=intrinsics,
                capture_time_ns=frame_ns + round(sequence * 1e9 / (self.options.fps or 30.0)),
                sequence=sequence,
                serial=self.serial,
                depth_unit_m=unit,
            )
            sequence += 1
            if not self.options.loop:
                return


def open_pcd(arg: str | None, spec: str, options: SourceOptions) -> PCDSource:
    if not arg:
        raise SourceError("pcd source needs a file: --source pcd:FILE.pcd")
    return PCDSource(spec, options, arg)
