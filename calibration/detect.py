"""Finding the board in a colour image and lifting its corners into 3D with the depth image.

Detection is OpenCV's ``CharucoDetector`` with the board of the :class:`~calibration.board.BoardSpec`
(markers first, then the chessboard corners between them). Its corners came out about 0.45 px off
on the tests' rendered boards; one more ``cornerSubPix`` pass, with a window a quarter of a square
wide (so that it never reaches the next corner on a board seen at a slant), brings them to
0.1-0.15 px.

Lifting: a single depth pixel is too noisy for a corner (several millimetres at 2 m), so the depth
pixels on the board (inside its outline as a first, colour-only pose projects it, a little inside
the pattern's edge; else inside the detected corners' hull) are fitted with one plane (RANSAC,
then least squares in inverse depth on its inliers, see :func:`_fit_inverse_depth`), and each
corner is the point where its colour pixel's ray meets that plane. The plane averages thousands
of depth samples; the corners keep the colour image's sub-pixel accuracy.
A corner whose own neighbourhood in depth lies more than 3 cm off the plane (something in front
of the board, a hole in the depth image) is marked as not lifted.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import cv2
import numpy as np

from calibration.board import BoardSpec
from holo.frame import Intrinsics
from holo.geometry import Plane, backproject, fit_plane_ransac

__all__ = ["MIN_CORNERS", "BoardDetection", "LiftedCorners", "corner_spread", "detect_board", "lift_corners"]

logger = logging.getLogger(__name__)

#: Fewer ChArUco corners than this (or all on one line) do not give a trustworthy pose.
MIN_CORNERS = 6
#: Depth pixels on the board needed to fit its plane.
MIN_PLANE_PIXELS = 200
_CORNER_DEPTH_TOLERANCE_M = 0.03


@dataclass(frozen=True, slots=True, eq=False)
class BoardDetection:
    """ChArUco corners found in one colour image."""

    ids: np.ndarray  # (N,) int32 corner ids
    corners_px: np.ndarray  # (N, 2) float64 pixel positions (u, v)
    markers: int  # ArUco markers found

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, slots=True, eq=False)
class LiftedCorners:
    """Corners in the camera frame (metres): the corner rays met with the board plane fitted to depth."""

    ids: np.ndarray  # (M,) ids of the corners lifted
    points_in_camera: np.ndarray  # (M, 3)
    corners_px: np.ndarray  # (M, 2)


@functools.lru_cache(maxsize=8)
def _detector(spec: BoardSpec) -> cv2.aruco.CharucoDetector:
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_NONE  # corners are refined below
    charuco = cv2.aruco.CharucoParameters()
    charuco.tryRefineMarkers = True
    return cv2.aruco.CharucoDetector(spec.cv_board(), charuco, params)


def detect_board(color: np.ndarray, spec: BoardSpec) -> BoardDetection:
    """The board's corners in an RGB (or grey) image; an empty detection when it is not there."""
    grey = cv2.cvtColor(color, cv2.COLOR_RGB2GRAY) if color.ndim == 3 else color
    corners, ids, _, marker_ids = _detector(spec).detectBoard(grey)
    markers = 0 if marker_ids is None else len(marker_ids)
    if ids is None or corners is None or len(ids) == 0:
        return BoardDetection(np.zeros(0, np.int32), np.zeros((0, 2)), markers)
    pts = np.asarray(corners, np.float32).reshape(-1, 1, 2)
    # Refine once more with a window matched to the squares' size in the image.
    win = _refine_window(pts.reshape(-1, 2), np.asarray(ids).reshape(-1), spec)
    cv2.cornerSubPix(
        grey, pts, (win, win), (-1, -1), (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 50, 0.001)
    )
    return BoardDetection(
        np.asarray(ids, np.int32).reshape(-1), pts.reshape(-1, 2).astype(np.float64), markers
    )


def _refine_window(pts: np.ndarray, ids: np.ndarray, spec: BoardSpec) -> int:
    """A quarter of the squares' smallest side in pixels (2..6): sees the corner, not its neighbours."""
    if len(ids) < 2:
        return 3
    cols = spec.squares_x - 1
    grid = np.stack([ids % cols, ids // cols], axis=1).astype(np.float64)
    d_px = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    d_sq = np.linalg.norm(grid[:, None] - grid[None], axis=-1)
    np.fill_diagonal(d_sq, np.inf)
    ratio = d_px[np.isfinite(d_sq)] / d_sq[np.isfinite(d_sq)]
    return int(np.clip(0.25 * np.min(ratio), 2, 6))


def corner_spread(ids: np.ndarray, spec: BoardSpec) -> tuple[int, int]:
    """Distinct chessboard columns and rows the corner ids cover."""
    cols = spec.squares_x - 1
    return len(np.unique(ids % cols)), len(np.unique(ids // cols))


def _fit_inverse_depth(points: np.ndarray) -> Plane | None:
    """Least-squares plane in inverse depth: ``1/z = a x/z + b y/z + c`` (camera frame, normal to the camera).

    Depth noise runs along each pixel's ray, so an orthogonal (SVD) fit is biased on a tilted
    board — by a quarter of a degree at 2 m. Regressing inverse depth on the pixel's ray is
    unbiased, and for a camera whose noise grows with distance squared (stereo, structured light)
    inverse depth has the same noise everywhere, so plain least squares is also the best weighting.
    """
    if len(points) < 3:
        return None
    z = points[:, 2]
    a = np.stack([points[:, 0] / z, points[:, 1] / z, np.ones_like(z)], axis=1)
    sol, *_ = np.linalg.lstsq(a, 1.0 / z, rcond=None)
    norm = float(np.linalg.norm(sol))
    if not np.isfinite(norm) or norm == 0:
        return None
    normal = -sol / norm  # the camera (origin) lies on the positive side
    offset = 1.0 / norm
    d = points @ normal + offset
    return Plane(normal=normal, offset=offset, inlier_fraction=1.0, rms_m=float(np.sqrt(np.mean(d**2))))


def lift_corners(
    detection: BoardDetection,
    depth_m: np.ndarray,
    intrinsics: Intrinsics,
    *,
    outline_px: np.ndarray | None = None,
) -> LiftedCorners | str:
    """Lift detected corners onto the depth image's board plane; a reason string when impossible.

    The plane is fitted to the depth pixels inside ``outline_px`` (the whole board's outline as a
    first pose projects it: more pixels, wider spread) or else inside the detected corners' hull.
    """
    if len(detection) < 3:
        return "too few corners to outline the board"
    hull = cv2.convexHull((outline_px if outline_px is not None else detection.corners_px).astype(np.float32))
    mask = np.zeros(depth_m.shape, np.uint8)
    cv2.fillConvexPoly(mask, np.round(hull).astype(np.int32).reshape(-1, 2), (1,))
    inside = mask.astype(bool) & (depth_m > 0)
    count = int(inside.sum())
    if count < MIN_PLANE_PIXELS:
        return (
            f"only {count} depth pixels on the board (need {MIN_PLANE_PIXELS}): no depth where colour sees it"
        )
    points, _, _ = backproject(depth_m, intrinsics, inside)
    pts = points.astype(np.float64)
    z_med = float(np.median(pts[:, 2]))
    threshold = max(0.01, 3 * 0.0015 * z_med * z_med)  # ~3 sigma of a depth camera's noise
    plane = fit_plane_ransac(pts, threshold_m=threshold, iterations=200, up_hint=np.array([0.0, 0.0, -1.0]))
    if plane is None or plane.inlier_fraction < 0.5:
        return "the depth image shows no flat board where the colour image sees it"
    for _ in range(2):
        plane = _fit_inverse_depth(pts[np.abs(plane.distance(pts)) < threshold]) or plane
    inlier_fraction = float(np.mean(np.abs(plane.distance(pts)) < threshold))
    if inlier_fraction < 0.5:
        return "the depth image shows no flat board where the colour image sees it"
    k = intrinsics
    rays = np.stack(
        [
            (detection.corners_px[:, 0] - k.cx) / k.fx,
            (detection.corners_px[:, 1] - k.cy) / k.fy,
            np.ones(len(detection)),
        ],
        axis=1,
    )
    denom = rays @ plane.normal
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -plane.offset / denom
    lifted = rays * t[:, None]
    keep = np.isfinite(t) & (t > 0)
    # The corner's own depth neighbourhood must agree with the plane (nothing in front of it).
    h, w = depth_m.shape
    for i, (u, v) in enumerate(np.round(detection.corners_px).astype(int)):
        if not keep[i]:
            continue
        patch = depth_m[max(0, v - 2) : min(h, v + 3), max(0, u - 2) : min(w, u + 3)]
        valid = patch[patch > 0]
        if len(valid) and abs(float(np.median(valid)) - lifted[i, 2]) > _CORNER_DEPTH_TOLERANCE_M:
            keep[i] = False
    return LiftedCorners(
        ids=detection.ids[keep],
        points_in_camera=lifted[keep],
        corners_px=detection.corners_px[keep],
    )
