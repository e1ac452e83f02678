"""One camera's pose from the board it sees: ``camera_from_board``, with its reprojection error.

Two estimates are made from the same detected corners and the better one is kept:

- **depth**: the corners lifted onto the depth image's board plane (:mod:`calibration.detect`;
  the plane is fitted inside the board's outline as the colour pose projects it) are fitted to
  the board's corner grid by Kabsch (least-squares rigid fit), dropping corners whose 3D residual
  exceeds max(3 mm, median + 3 robust sigmas) and refitting;
- **colour**: ``solvePnP`` (IPPE for a planar target, then Levenberg–Marquardt) on the corners'
  pixels alone.

Colour alone is poor at a board's distance and tilt: on the synthetic rigs of the tests (an A3
board at 2 m) it is 0.1-0.3° and 3-10 mm off, where the depth estimate is 0.03-0.1° and 1-4 mm.
The depth plane pins distance and tilt, averaged over thousands of pixels.
So the depth estimate is kept unless its reprojection error exceeds both twice the colour
estimate's and the colour estimate's plus 0.5 px — a sign that depth is not registered to colour,
or the board is not flat — in which case the colour estimate is kept and the reason logged.

A camera without a usable view of the board gets a :class:`PoseFailure` with the reason in plain
words; nothing is guessed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np

from calibration.board import BoardSpec
from calibration.detect import MIN_CORNERS, BoardDetection, corner_spread, detect_board, lift_corners
from holo.frame import Intrinsics, RGBDFrame

__all__ = [
    "BoardPose",
    "PoseFailure",
    "kabsch",
    "reprojection_error_px",
    "robust_kabsch",
    "solve_board_pose",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, eq=False)
class BoardPose:
    """Where one camera saw the board."""

    serial: str
    camera_from_board: np.ndarray  # 4x4, metres
    reprojection_error_px: float  # RMS over the corners used
    corners: int  # corners used
    method: str  # "depth" or "colour"
    detection: BoardDetection
    intrinsics: Intrinsics
    #: The lifted corners the depth pose used: ids and camera-frame points (empty for a colour pose).
    corner_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    corners_in_camera: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))


@dataclass(frozen=True, slots=True)
class PoseFailure:
    """A camera that did not give a pose, and why (a plain-words sentence fragment)."""

    serial: str
    reason: str


def kabsch(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The rigid ``dst_from_src`` (4x4) minimising the squared distances of corresponding points."""
    cs, cd = src.mean(axis=0), dst.mean(axis=0)
    h = (src - cs).T @ (dst - cd)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = cd - r @ cs
    return m


def robust_kabsch(
    src: np.ndarray, dst: np.ndarray, *, min_inliers: int = MIN_CORNERS, floor_m: float = 0.003
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Kabsch with outlier rejection: (dst_from_src, inlier mask, inlier RMS in metres) or None."""
    inliers = np.ones(len(src), bool)
    m = np.eye(4)
    for _ in range(4):
        if inliers.sum() < max(3, min_inliers):
            return None
        m = kabsch(src[inliers], dst[inliers])
        residual = np.linalg.norm(src @ m[:3, :3].T + m[:3, 3] - dst, axis=1)
        mad = float(np.median(np.abs(residual[inliers] - np.median(residual[inliers]))))
        keep = residual < max(floor_m, float(np.median(residual[inliers])) + 3 * 1.4826 * mad)
        if np.array_equal(keep, inliers):
            break
        inliers = keep
    if inliers.sum() < max(3, min_inliers):
        return None
    residual = np.linalg.norm(src[inliers] @ m[:3, :3].T + m[:3, 3] - dst[inliers], axis=1)
    return m, inliers, float(np.sqrt(np.mean(residual**2)))


def _project(camera_from_board: np.ndarray, points_in_board: np.ndarray, k: Intrinsics) -> np.ndarray:
    pc = points_in_board @ camera_from_board[:3, :3].T + camera_from_board[:3, 3]
    z = np.where(pc[:, 2] > 1e-6, pc[:, 2], np.nan)
    return np.stack([k.fx * pc[:, 0] / z + k.cx, k.fy * pc[:, 1] / z + k.cy], axis=1)


def reprojection_error_px(
    camera_from_board: np.ndarray, detection: BoardDetection, spec: BoardSpec, intrinsics: Intrinsics
) -> float:
    """RMS distance (pixels) between detected corners and the board's corners projected by the pose."""
    if len(detection) == 0:
        return float("nan")
    uv = _project(camera_from_board, spec.corners_in_board()[detection.ids], intrinsics)
    err = np.linalg.norm(uv - detection.corners_px, axis=1)
    return float(np.sqrt(np.mean(err**2))) if np.all(np.isfinite(err)) else float("inf")


def _pnp(detection: BoardDetection, spec: BoardSpec, k: Intrinsics) -> np.ndarray | None:
    obj = spec.corners_in_board()[detection.ids].astype(np.float64)
    img = detection.corners_px.astype(np.float64)
    no_distortion = np.zeros(5)  # sources deliver undistorted images
    try:
        ok, rvec, tvec = cv2.solvePnP(obj, img, k.matrix, no_distortion, flags=cv2.SOLVEPNP_IPPE)
        if not ok:
            return None
        rvec, tvec = cv2.solvePnPRefineLM(obj, img, k.matrix, no_distortion, rvec, tvec)
    except cv2.error as exc:
        logger.debug("solvePnP failed: %s", exc)
        return None
    m = np.eye(4)
    m[:3, :3] = cv2.Rodrigues(rvec)[0]
    m[:3, 3] = tvec.reshape(3)
    return m if m[2, 3] > 0 else None


def _outline(camera_from_board: np.ndarray | None, spec: BoardSpec, k: Intrinsics) -> np.ndarray | None:
    """The pattern's outline in the image (a fifth of a square inside its edge), or None if not all in view."""
    if camera_from_board is None:
        return None
    w, h = spec.size_m
    inset = 0.2 * spec.square_length_m
    corners = np.array(
        [[inset, inset, 0], [w - inset, inset, 0], [w - inset, h - inset, 0], [inset, h - inset, 0]]
    )
    uv = _project(camera_from_board, corners, k)
    if not np.all(np.isfinite(uv)):
        return None
    return np.clip(uv, [0, 0], [k.width - 1, k.height - 1])


def solve_board_pose(frame: RGBDFrame, spec: BoardSpec) -> BoardPose | PoseFailure:
    """The camera's pose relative to the board in ``frame``, or why there is none."""
    serial = frame.serial
    if frame.color is None:
        return PoseFailure(serial, "it is a depth-only camera and cannot see the printed board")
    detection = detect_board(frame.color, spec)
    if detection.markers == 0:
        return PoseFailure(serial, "no board in its colour image (no ArUco marker found)")
    if len(detection) < MIN_CORNERS:
        return PoseFailure(
            serial,
            f"the board is only partly visible or too small: {detection.markers} markers but only "
            f"{len(detection)} of {spec.corner_count} corners found (need {MIN_CORNERS})",
        )
    cols, rows = corner_spread(detection.ids, spec)
    if cols < 2 or rows < 2:
        return PoseFailure(
            serial, "the corners it found lie on one line of the board; show more of the board"
        )
    k = frame.intrinsics
    colour_pose = _pnp(detection, spec, k)
    colour_err = reprojection_error_px(colour_pose, detection, spec, k) if colour_pose is not None else np.inf
    lifted = lift_corners(detection, frame.depth_m, k, outline_px=_outline(colour_pose, spec, k))
    depth_pose: tuple[np.ndarray, np.ndarray, float] | None = None
    depth_reason = lifted if isinstance(lifted, str) else ""
    if not isinstance(lifted, str):
        depth_pose = robust_kabsch(spec.corners_in_board()[lifted.ids], lifted.points_in_camera)
        if depth_pose is None:
            depth_reason = "too few corners agree with the depth image's board plane"
    if depth_pose is not None and not isinstance(lifted, str):
        m, inliers, rms = depth_pose
        depth_err = reprojection_error_px(m, detection, spec, k)
        if depth_err <= max(2 * colour_err, colour_err + 0.5):
            logger.info(
                "%s: board pose from depth + colour, %d corners, %.2f px, corner fit %.1f mm "
                "(colour alone: %.2f px)",
                serial,
                int(inliers.sum()),
                depth_err,
                rms * 1000,
                colour_err,
            )
            return BoardPose(
                serial,
                m,
                depth_err,
                int(inliers.sum()),
                "depth",
                detection,
                k,
                lifted.ids[inliers],
                lifted.points_in_camera[inliers],
            )
        depth_reason = (
            f"the depth image disagrees with colour ({depth_err:.1f} px against {colour_err:.1f} px "
            "from colour alone; is depth registered to colour?)"
        )
    if colour_pose is None:
        return PoseFailure(serial, f"no pose fits the corners it found ({depth_reason or 'solvePnP failed'})")
    logger.warning("%s: board pose from colour alone, less accurate in distance: %s", serial, depth_reason)
    return BoardPose(serial, colour_pose, float(colour_err), len(detection), "colour", detection, k)
