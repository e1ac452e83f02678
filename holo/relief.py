"""A person's 3D relief from a plain colour image: the segmentation mask and the 3D pose, no depth.

1. **Distance.** MediaPipe's world landmarks are metric; the image landmarks are pixels. For each
   bone seen well (shoulders, hips, torso sides, upper arms, thighs), the camera's focal length times
   the bone's length across the image plane, divided by its length in pixels, gives the distance of
   the person; the median over bones is used.
2. **Joint depths.** Each joint's depth is that distance plus its world-landmark z (MediaPipe's z is
   relative to the hips, smaller nearer), so an arm reaching forward is nearer than the chest.
3. **Body.** Every masked pixel belongs to the bone it is closest to *relative to that bone's
   thickness* (a limb is a capsule: torso 20 cm, head 9 cm, upper arm 5.5 cm, forearm 4.5 cm, thigh
   8 cm, shin 6 cm radius); where several capsules cover a pixel, the nearest wins — so an arm in
   front of the torso stands in front of it. The pixel's depth is the depth along that bone minus
   the capsule's bulge at that distance from its axis (the torso's bulge flattened to 50 %: a chest
   is wider than it is deep).

The result is a depth image in the camera frame (millimetres, like a depth camera's), so the rest
of the capture pipeline — back-projection, codec, viewer — treats it like any camera's frame.
Pixels farther than 1.3 radii from every bone (hair, loose clothes) take the nearest bone's depth.
"""

from __future__ import annotations

import numpy as np

from holo.frame import Intrinsics

__all__ = ["BONES", "estimate_distance_m", "relief_depth"]

# (joint a, joint b, radius in metres, bulge scale); indices are MediaPipe Pose's.
BONES: tuple[tuple[int, int, float, float], ...] = (
    (-1, -2, 0.2, 0.5),  # torso: mid-shoulders to mid-hips (virtual joints)
    (-1, 0, 0.09, 1.0),  # neck and head: mid-shoulders to nose
    (11, 13, 0.055, 1.0),
    (13, 15, 0.045, 1.0),  # left arm
    (12, 14, 0.055, 1.0),
    (14, 16, 0.045, 1.0),  # right arm
    (23, 25, 0.08, 1.0),
    (25, 27, 0.06, 1.0),  # left leg
    (24, 26, 0.08, 1.0),
    (26, 28, 0.06, 1.0),  # right leg
)
_SCALE_BONES = ((11, 12), (23, 24), (11, 23), (12, 24), (11, 13), (12, 14), (23, 25), (24, 26))


def _with_virtual(points: np.ndarray) -> np.ndarray:
    """Append mid-shoulders (-1) and mid-hips (-2) as the last two rows."""
    mid_shoulder = (points[11] + points[12]) / 2
    mid_hip = (points[23] + points[24]) / 2
    return np.vstack([points, mid_hip[None], mid_shoulder[None]])


def estimate_distance_m(
    landmarks_px: np.ndarray, world_m: np.ndarray, intrinsics: Intrinsics
) -> float | None:
    """The hips' distance from the camera, from bone lengths in metres and in pixels."""
    f = (intrinsics.fx + intrinsics.fy) / 2
    estimates = []
    for a, b in _SCALE_BONES:
        if min(landmarks_px[a, 2], landmarks_px[b, 2]) < 0.5:
            continue
        metric = float(np.hypot(*(world_m[a, :2] - world_m[b, :2])))
        pixels = float(np.hypot(*(landmarks_px[a, :2] - landmarks_px[b, :2])))
        if metric > 0.05 and pixels > 5:
            estimates.append(f * metric / pixels)
    if not estimates:
        return None
    return float(np.median(estimates))


def relief_depth(
    mask: np.ndarray,
    landmarks_px: np.ndarray,
    world_m: np.ndarray,
    intrinsics: Intrinsics,
    distance_m: float,
) -> np.ndarray | None:
    """Depth (H x W float32 metres, 0 outside ``mask``) of the person, or None for an empty mask.

    ``distance_m`` is the hips' distance from the camera (:func:`estimate_distance_m`).
    """
    f = (intrinsics.fx + intrinsics.fy) / 2
    pix = _with_virtual(landmarks_px[:, :2].astype(np.float64))
    joint_z = _with_virtual(world_m[:, 2:3].astype(np.float64))[:, 0] + distance_m
    v, u = np.nonzero(mask)
    if len(u) == 0:
        return None
    p = np.stack([u, v], axis=1).astype(np.float64)
    best_depth = np.full(len(u), np.inf)
    fallback_score = np.full(len(u), np.inf)
    fallback_depth = np.zeros(len(u))
    for a, b, radius_m, bulge in BONES:
        pa, pb = pix[a], pix[b]
        ab = pb - pa
        length2 = float(ab @ ab) or 1e-9
        t = np.clip(((p - pa) @ ab) / length2, 0.0, 1.0)
        closest = pa + t[:, None] * ab
        z_axis = joint_z[a] + t * (joint_z[b] - joint_z[a])
        d_m = np.linalg.norm(p - closest, axis=1) * z_axis / f  # distance from the bone's axis, metres
        score = d_m / radius_m
        inside = score <= 1.3
        surface = z_axis - bulge * np.sqrt(np.clip(radius_m**2 - d_m**2, 0.0, None))
        # Among the capsules covering a pixel, the nearest surface wins (arm in front of torso).
        better = inside & (surface < best_depth)
        best_depth[better] = surface[better]
        closer = score < fallback_score
        fallback_score[closer] = score[closer]
        fallback_depth[closer] = z_axis[closer]
    depth_values = np.where(np.isfinite(best_depth), best_depth, fallback_depth)
    out = np.zeros(mask.shape, np.float32)
    out[v, u] = np.clip(depth_values, 0.2, 20.0)
    return out
