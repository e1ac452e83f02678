"""Small geometry helpers over numpy arrays: rays, back-projection, planes, rigid transforms."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from holo.frame import Intrinsics

__all__ = [
    "Plane",
    "backproject",
    "fit_plane_ransac",
    "pixel_rays",
    "pixels_to_points",
    "refine_plane",
    "rotation_between",
    "transform_points",
]


@functools.lru_cache(maxsize=16)
def pixel_rays(intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel (x/z, y/z) of a pinhole camera, as two HxW float32 images (cached per camera)."""
    h, w = intrinsics.shape
    rx = ((np.arange(w, dtype=np.float32) - intrinsics.cx) / intrinsics.fx).astype(np.float32)
    ry = ((np.arange(h, dtype=np.float32) - intrinsics.cy) / intrinsics.fy).astype(np.float32)
    rx_img = np.broadcast_to(rx[None, :], (h, w))
    ry_img = np.broadcast_to(ry[:, None], (h, w))
    rx_img.flags.writeable = False
    ry_img.flags.writeable = False
    return rx_img, ry_img


def pixels_to_points(u: np.ndarray, v: np.ndarray, z: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Camera-frame points (N x 3 float32) of integer pixels ``u``, ``v`` at depths ``z`` (metres),
    in float32 in one fixed operation order, so every caller gets bit-identical points."""
    points = np.empty((len(z), 3), np.float32)
    points[:, 0] = (u.astype(np.float32) - np.float32(intrinsics.cx)) * (z / np.float32(intrinsics.fx))
    points[:, 1] = (v.astype(np.float32) - np.float32(intrinsics.cy)) * (z / np.float32(intrinsics.fy))
    points[:, 2] = z
    return points


def backproject(
    depth_m: np.ndarray, intrinsics: Intrinsics, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera-frame points (N x 3 float32), their pixels (N x 2 uint16, u v) and flat pixel indices."""
    w = intrinsics.width
    idx = np.flatnonzero(mask).astype(np.int32)
    z = depth_m.reshape(-1)[idx]
    v, u = np.divmod(idx, np.int32(w))
    points = pixels_to_points(u, v, z, intrinsics)
    pixels = np.empty((len(z), 2), np.uint16)
    pixels[:, 0] = u
    pixels[:, 1] = v
    return points, pixels, idx


def transform_points(to_from: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 rigid transform to N x 3 points (float32 out)."""
    r = to_from[:3, :3].astype(np.float32)
    t = to_from[:3, 3].astype(np.float32)
    return (points @ r.T + t).astype(np.float32, copy=False)


@dataclass(frozen=True, slots=True)
class Plane:
    """The plane ``normal . p + offset = 0``; ``normal`` is unit length and points to the kept side."""

    normal: np.ndarray
    offset: float
    inlier_fraction: float = 0.0
    rms_m: float = 0.0

    def distance(self, points: np.ndarray) -> np.ndarray:
        return points @ self.normal.astype(points.dtype) + np.asarray(self.offset, points.dtype)


def _refine(points: np.ndarray) -> tuple[np.ndarray, float]:
    centroid = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centroid, full_matrices=False)
    normal = vt[2]
    return normal, -float(normal @ centroid)


def fit_plane_ransac(
    points: np.ndarray,
    *,
    threshold_m: float = 0.03,
    iterations: int = 200,
    up_hint: np.ndarray | None = None,
    max_tilt_deg: float = 90.0,
    min_inlier_fraction: float = 0.05,
    seed: int = 0,
    extra_hypotheses: list[Plane] | None = None,
    max_below_fraction: float | None = None,
    below_margin_m: float = 0.1,
) -> Plane | None:
    """Vectorised RANSAC plane fit; returns the plane with most inliers, refined by least squares.

    With ``up_hint`` only planes whose normal lies within ``max_tilt_deg`` of it are considered, and
    the returned normal points the same way as the hint. With ``max_below_fraction`` a plane is
    refused when more than that fraction of the points lie over ``below_margin_m`` on its far side
    (nothing stands under a floor). ``extra_hypotheses`` (e.g. last frame's
    floor) compete with the random ones, which keeps a tracked plane stable from frame to frame.
    """
    pts = np.asarray(points, np.float64)
    n = len(pts)
    if n < 3:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(iterations, 3))
    a, b, c = pts[idx[:, 0]], pts[idx[:, 1]], pts[idx[:, 2]]
    normals = np.cross(b - a, c - a)
    norms = np.linalg.norm(normals, axis=1)
    good = norms > 1e-9
    normals = normals[good] / norms[good, None]
    offsets = -np.einsum("ij,ij->i", normals, a[good])
    if extra_hypotheses:
        normals = np.vstack([normals, *[h.normal[None, :] for h in extra_hypotheses]])
        offsets = np.concatenate([offsets, [h.offset for h in extra_hypotheses]])
    if up_hint is not None:
        up = np.asarray(up_hint, np.float64) / np.linalg.norm(up_hint)
        flip = normals @ up < 0
        normals[flip] *= -1
        offsets[flip] *= -1
        keep = normals @ up >= math.cos(math.radians(max_tilt_deg))
        normals, offsets = normals[keep], offsets[keep]
    if len(normals) == 0:
        return None
    signed = pts @ normals.T + offsets  # (n, hypotheses)
    dist = np.abs(signed)
    counts = (dist < threshold_m).sum(axis=0)
    if max_below_fraction is not None:
        below = (signed < -below_margin_m).mean(axis=0)
        counts[below > max_below_fraction] = 0
    best = int(np.argmax(counts))
    if counts[best] < max(3, min_inlier_fraction * n):
        return None
    inliers = pts[dist[:, best] < threshold_m]
    normal, offset = _refine(inliers)
    if normal @ normals[best] < 0:
        normal, offset = -normal, -offset
    d = np.abs(pts @ normal + offset)
    final = d < threshold_m
    rms = float(np.sqrt(np.mean(d[final] ** 2))) if final.any() else 0.0
    return Plane(normal=normal, offset=offset, inlier_fraction=float(final.mean()), rms_m=rms)


def refine_plane(points: np.ndarray, plane: Plane, *, threshold_m: float) -> Plane | None:
    """Least-squares refit of ``plane`` to the points within ``threshold_m`` of it (orientation kept)."""
    pts = np.asarray(points, np.float64)
    d = np.abs(pts @ plane.normal + plane.offset)
    inliers = pts[d < threshold_m]
    if len(inliers) < 3:
        return None
    normal, offset = _refine(inliers)
    if normal @ plane.normal < 0:
        normal, offset = -normal, -offset
    d = np.abs(pts @ normal + offset)
    final = d < threshold_m
    rms = float(np.sqrt(np.mean(d[final] ** 2))) if final.any() else 0.0
    return Plane(normal=normal, offset=offset, inlier_fraction=float(final.mean()), rms_m=rms)


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation (3x3) taking unit vector ``a`` onto unit vector ``b``."""
    a = np.asarray(a, np.float64) / np.linalg.norm(a)
    b = np.asarray(b, np.float64) / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(a @ b)
    if c < -1 + 1e-9:  # opposite: rotate 180 degrees about any axis perpendicular to a
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)
