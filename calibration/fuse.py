"""Fusing calibrated cameras' person clouds into one world-frame cloud.

Each source's camera is found in the calibration by its serial (:func:`match_cameras`; a serial the
file does not know is an error that lists the serials it does). Each camera's person cloud is
placed in the world by its ``world_from_camera``; the clouds are concatenated and points closer
than the voxel size (default 5 mm) are merged: one point per occupied voxel, at the mean of the
points in it, with their mean colour (a numpy voxel hash — overlapping cameras see the same skin
twice, and this keeps it once). The result is one :class:`PersonCloud` with ``frame="world"`` and no
pixel grid (an unorganised cloud, which the codec codes as such).
"""

from __future__ import annotations

import logging

import numpy as np

from calibration.calibfile import CalibrationFile, CameraCalibration
from holo.errors import CalibrationError
from holo.frame import PersonCloud

__all__ = ["DEFAULT_VOXEL_M", "fuse_clouds", "match_cameras", "voxel_merge"]

logger = logging.getLogger(__name__)

DEFAULT_VOXEL_M = 0.005


def match_cameras(calibration: CalibrationFile, serials: list[str]) -> list[CameraCalibration]:
    """The calibration of each serial, in order; an error naming the first unknown one and the known ones."""
    if len(set(serials)) != len(serials):
        raise CalibrationError(f"two sources report the same camera serial ({', '.join(serials)})")
    return [calibration.camera(s) for s in serials]


def voxel_merge(points: np.ndarray, colors: np.ndarray, voxel_m: float) -> tuple[np.ndarray, np.ndarray]:
    """One point per occupied ``voxel_m`` cube: the mean position and mean colour of its points."""
    if len(points) == 0 or voxel_m <= 0:
        return points.astype(np.float32), colors.astype(np.uint8)
    cells = np.floor(points / np.float32(voxel_m)).astype(np.int64)
    cells -= cells.min(axis=0)
    span = cells.max(axis=0) + 1
    if np.prod(span.astype(np.float64)) >= 2**62:
        raise CalibrationError("the fused cloud spans too large a volume to merge (points kilometres apart)")
    keys = (cells[:, 0] * span[1] + cells[:, 1]) * span[2] + cells[:, 2]
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    n = len(counts)
    out_p = np.empty((n, 3), np.float32)
    out_c = np.empty((n, 3), np.uint8)
    for i in range(3):
        out_p[:, i] = np.bincount(inverse, points[:, i].astype(np.float64), n) / counts
        out_c[:, i] = np.round(np.bincount(inverse, colors[:, i].astype(np.float64), n) / counts).astype(
            np.uint8
        )
    return out_p, out_c


def fuse_clouds(clouds: list[PersonCloud], *, voxel_m: float = DEFAULT_VOXEL_M) -> PersonCloud:
    """One world-frame cloud from several placed clouds of the same instant (see the module docstring)."""
    if not clouds:
        raise CalibrationError("there are no clouds to fuse")
    for cloud in clouds:
        if cloud.frame != "world" and cloud.world_from_camera is None:
            raise CalibrationError(
                f"camera {cloud.serial}'s cloud is not placed in the world; it cannot be fused"
            )
    points = np.concatenate([c.points_in_world() for c in clouds])
    colors = np.concatenate([c.colors for c in clouds])
    merged_p, merged_c = voxel_merge(points, colors, voxel_m)
    first = clouds[0]
    statuses = sorted({f"{c.serial}: {c.status}" for c in clouds if c.status})
    status = "no person in view" if len(merged_p) == 0 else "; ".join(statuses)
    skeleton = next((c.in_world().skeleton for c in clouds if c.skeleton is not None), None)
    return PersonCloud(
        points_m=np.ascontiguousarray(merged_p),
        colors=np.ascontiguousarray(merged_c),
        capture_time_ns=max(c.capture_time_ns for c in clouds),
        sequence=first.sequence,
        participant=first.participant,
        frame="world",
        skeleton=skeleton,
        serial="+".join(c.serial for c in clouds),
        status=status,
        extra={"cameras": float(len(clouds)), "points_before_merge": float(len(points)), "voxel_m": voxel_m},
    )
