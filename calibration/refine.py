"""Refining the cameras' relative poses with ICP on the overlap of their clouds (Open3D).

The board gives each camera's pose from a few dozen corners; the cameras' whole depth images
overlap on far more surface (floor, walls, furniture, a person). Here each camera's cloud is
aligned to the clouds of the cameras before it (the first solved camera is the reference and
does not move), all in the board's frame:

1. Clouds: every other row and column of the depth image from 0.2 m to ``max_depth_m`` (4.5 m),
   voxel-averaged to 1.5 cm, normals from up to 30 neighbours, facing the camera.
2. Point-to-plane ICP (Open3D, Tukey robust kernel) coarse to fine: correspondences within 16,
   6, 2.5 and 1.5 cm on clouds of 4, 2.5, 1.5 and 1.5 cm voxels — it converges from several
   centimetres and degrees off (tested from 3 cm / 3°, where points start 6-15 cm away).
3. Coloured ICP (Park et al., Open3D) from that result, when both clouds have colour and the
   overlap has texture (intensity spread over 4 %); kept only when it lowers the colour residual
   without raising the geometric one by more than 2 %.
4. Checks, each of which keeps the board's pose and says why: fewer than 500 overlapping points
   (within 8 cm); an overlap too flat to fix every direction (the smallest eigenvalue of the
   point-to-plane Hessian — rotations about the overlap's centroid, in radians x 1 m — under 0.2 %
   of the largest: a floor or a wall alone lets a camera slide along it); a correction that moves
   the camera more than ``max_correction_m`` (5 cm) or turns it more than ``max_correction_deg``
   (5°), which means ICP slid into a wrong fit rather than refined a right one; a residual that
   ICP made worse.

The residual reported is the RMS point-to-plane distance (mm) between the camera's points and the
others' surface, over the points with a partner within 2 cm; with depth noise of a few
millimetres, 2-6 mm is good. Above ``POOR_RESIDUAL_MM`` (10 mm) the cameras disagree by about a
centimetre — doubled surfaces a viewer will see — and the caller warns.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import open3d as o3d
from scipy.spatial import cKDTree

from holo.frame import RGBDFrame
from holo.geometry import backproject

__all__ = ["POOR_RESIDUAL_MM", "IcpResult", "camera_cloud", "cloud_residual", "refine_poses"]

logger = logging.getLogger(__name__)

POOR_RESIDUAL_MM = 10.0
RESIDUAL_DISTANCE_M = 0.02
MIN_OVERLAP_POINTS = 500
VOXEL_M = 0.015
_SCALES = ((0.04, 0.16, 30), (0.025, 0.06, 30), (VOXEL_M, 0.025, 30), (VOXEL_M, 0.015, 30))
_FLATNESS = 2e-3
_TEXTURE = 0.04
_reg = o3d.pipelines.registration


@dataclass(frozen=True, slots=True, eq=False)
class IcpResult:
    """How one camera's pose was refined."""

    serial: str
    common_from_camera: np.ndarray  # the refined pose (the input pose when not refined)
    rms_mm: float  # point-to-plane residual after (nan when there is no overlap)
    overlap_points: int
    method: str  # "reference", "point-to-plane", "coloured", "board" (kept the board's pose)
    note: str = ""  # why the board's pose was kept


def camera_cloud(
    frame: RGBDFrame, *, voxel_m: float = VOXEL_M, max_depth_m: float = 4.5
) -> o3d.geometry.PointCloud:
    """The frame's whole depth image as an Open3D cloud in the camera frame (voxel-averaged, normals)."""
    mask = (frame.depth_m > 0.2) & (frame.depth_m < max_depth_m)
    # Every other row and column: still several pixels per voxel, four times less to sort.
    mask[1::2, :] = False
    mask[:, 1::2] = False
    points, _, flat = backproject(frame.depth_m, frame.intrinsics, mask)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    if frame.color is not None:
        colors = frame.color.reshape(-1, 3)[flat].astype(np.float64) / 255.0
        cloud.colors = o3d.utility.Vector3dVector(colors)
    cloud = cloud.voxel_down_sample(voxel_m)
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=3 * voxel_m, max_nn=30))
    cloud.orient_normals_towards_camera_location(np.zeros(3))
    return cloud


def cloud_residual(
    source: o3d.geometry.PointCloud,
    target: o3d.geometry.PointCloud,
    *,
    distance_m: float = RESIDUAL_DISTANCE_M,
) -> tuple[float, int, np.ndarray, np.ndarray]:
    """(RMS point-to-plane distance in mm, overlapping points, source indices, target indices)."""
    src = np.asarray(source.points)
    tgt = np.asarray(target.points)
    if len(src) == 0 or len(tgt) == 0:
        return float("nan"), 0, np.zeros(0, int), np.zeros(0, int)
    dist, idx = cKDTree(tgt).query(src, distance_upper_bound=distance_m)
    ok = np.isfinite(dist)
    si, ti = np.flatnonzero(ok), idx[ok]
    if len(si) == 0:
        return float("nan"), 0, si, ti
    normals = np.asarray(target.normals)[ti]
    d = np.einsum("ij,ij->i", src[si] - tgt[ti], normals)
    return float(np.sqrt(np.mean(d**2)) * 1000), len(si), si, ti


def _flatness(
    source: o3d.geometry.PointCloud, target: o3d.geometry.PointCloud, si: np.ndarray, ti: np.ndarray
) -> float:
    """Smallest / largest eigenvalue of the point-to-plane Hessian (rotation in radians over 1 m)."""
    p = np.asarray(source.points)[si]
    n = np.asarray(target.normals)[ti]
    p = p - p.mean(axis=0)
    jac = np.concatenate([np.cross(p, n), n], axis=1)
    eig = np.linalg.eigvalsh(jac.T @ jac)
    logger.debug("point-to-plane Hessian eigenvalues %s", eig)
    return float(eig[0] / eig[-1]) if eig[-1] > 0 else 0.0


def _colour_rms(
    source: o3d.geometry.PointCloud, target: o3d.geometry.PointCloud, si: np.ndarray, ti: np.ndarray
) -> float:
    a = np.asarray(source.colors)[si].mean(axis=1)
    b = np.asarray(target.colors)[ti].mean(axis=1)
    return float(np.sqrt(np.mean((a - b) ** 2))) if len(si) else float("nan")


def _icp(source: o3d.geometry.PointCloud, target: o3d.geometry.PointCloud) -> np.ndarray:
    """Coarse-to-fine point-to-plane ICP of two clouds already roughly aligned: target_from_source."""
    current = np.eye(4)
    for voxel, distance, iterations in _SCALES:
        src = source.voxel_down_sample(voxel) if voxel > VOXEL_M else source
        tgt = target.voxel_down_sample(voxel) if voxel > VOXEL_M else target
        if voxel > VOXEL_M:
            tgt.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=3 * voxel, max_nn=30))
            tgt.normals = o3d.utility.Vector3dVector(_orient_like(tgt, target))
        estimation = _reg.TransformationEstimationPointToPlane(_reg.TukeyLoss(k=distance / 2))
        result = _reg.registration_icp(
            src, tgt, distance, current, estimation, _reg.ICPConvergenceCriteria(max_iteration=iterations)
        )
        current = np.asarray(result.transformation)
    return current


def _orient_like(coarse: o3d.geometry.PointCloud, fine: o3d.geometry.PointCloud) -> np.ndarray:
    """Flip the coarse cloud's normals to agree with the nearest fine normal (keeps camera-facing)."""
    normals = np.asarray(coarse.normals).copy()
    _, idx = cKDTree(np.asarray(fine.points)).query(np.asarray(coarse.points))
    ref = np.asarray(fine.normals)[idx]
    flip = np.einsum("ij,ij->i", normals, ref) < 0
    normals[flip] *= -1
    return normals


def _transformed(cloud: o3d.geometry.PointCloud, m: np.ndarray) -> o3d.geometry.PointCloud:
    out = o3d.geometry.PointCloud(cloud)
    out.transform(m)
    return out


def _rotation_deg(m: np.ndarray) -> float:
    return math.degrees(math.acos(float(np.clip((np.trace(m[:3, :3]) - 1) / 2, -1.0, 1.0))))


def refine_poses(
    serials: list[str],
    clouds: list[o3d.geometry.PointCloud],
    common_from_camera: list[np.ndarray],
    *,
    max_correction_m: float = 0.05,
    max_correction_deg: float = 5.0,
    colour: bool = True,
) -> list[IcpResult]:
    """Refine every camera after the first against the ones before it (see the module docstring)."""
    results = [IcpResult(serials[0], common_from_camera[0], float("nan"), 0, "reference")]
    target = _transformed(clouds[0], common_from_camera[0])
    for serial, cloud, pose in zip(serials[1:], clouds[1:], common_from_camera[1:]):
        source = _transformed(cloud, pose)
        before, overlap, _, _ = cloud_residual(source, target)
        result = _refine_one(
            serial, source, target, pose, before, overlap, max_correction_m, max_correction_deg, colour
        )
        logger.info(
            "%s: ICP %s, residual %.1f -> %.1f mm over %d points%s",
            serial,
            result.method,
            before,
            result.rms_mm,
            result.overlap_points,
            f" ({result.note})" if result.note else "",
        )
        results.append(result)
        target += _transformed(cloud, result.common_from_camera)
        target = target.voxel_down_sample(VOXEL_M)
        target.normalize_normals()
    return results


def _refine_one(
    serial: str,
    source: o3d.geometry.PointCloud,
    target: o3d.geometry.PointCloud,
    pose: np.ndarray,
    before: float,
    overlap: int,
    max_correction_m: float,
    max_correction_deg: float,
    colour: bool,
) -> IcpResult:
    def keep(note: str) -> IcpResult:
        return IcpResult(serial, pose, before, overlap, "board", note)

    # The overlap is judged at the coarsest scale's reach: a camera several cm off has no partners within 2 cm.
    _, reach, rsi, rti = cloud_residual(source, target, distance_m=_SCALES[0][1] / 2)
    if reach < MIN_OVERLAP_POINTS:
        return keep(f"it overlaps the other cameras on only {reach} points")
    if _flatness(source, target, rsi, rti) < _FLATNESS:
        return keep("the overlap is too flat to fix every direction: a floor or a wall alone lets it slide")
    correction = _icp(source, target)
    method = "point-to-plane"
    refined = _transformed(source, correction)
    after, count, si2, ti2 = cloud_residual(refined, target)
    if colour and source.has_colors() and target.has_colors() and count >= MIN_OVERLAP_POINTS:
        intensity = np.asarray(target.colors)[ti2].mean(axis=1)
        if float(np.std(intensity)) > _TEXTURE:
            coloured = _coloured_icp(source, target, correction)
            if coloured is not None:
                alt = _transformed(source, coloured)
                alt_rms, alt_count, asi, ati = cloud_residual(alt, target)
                if alt_rms <= 1.02 * after and _colour_rms(alt, target, asi, ati) < _colour_rms(
                    refined, target, si2, ti2
                ):
                    correction, after, count, method = coloured, alt_rms, alt_count, "coloured"
    centre = pose[:3, 3]
    moved_m = float(np.linalg.norm(correction[:3, :3] @ centre + correction[:3, 3] - centre))
    turned_deg = _rotation_deg(correction)
    if moved_m > max_correction_m or turned_deg > max_correction_deg:
        return keep(
            f"ICP wanted to move it {moved_m * 100:.1f} cm / {turned_deg:.1f}° from where the board puts it, "
            "more than a refinement"
        )
    if after > before + 0.5 and count <= overlap:  # no more overlap, and a worse fit
        return keep(f"ICP did not lower the residual ({before:.1f} -> {after:.1f} mm)")
    return IcpResult(serial, correction @ pose, after, count, method)


def _coloured_icp(
    source: o3d.geometry.PointCloud, target: o3d.geometry.PointCloud, init: np.ndarray
) -> np.ndarray | None:
    try:
        result = _reg.registration_colored_icp(
            source,
            target,
            0.015,
            init,
            _reg.TransformationEstimationForColoredICP(lambda_geometric=0.968),
            _reg.ICPConvergenceCriteria(relative_fitness=1e-6, relative_rmse=1e-6, max_iteration=30),
        )
    except RuntimeError as exc:  # Open3D raises when there are too few correspondences
        logger.debug("coloured ICP failed: %s", exc)
        return None
    return np.asarray(result.transformation)
