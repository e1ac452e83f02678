"""The floor, and the world frame it sets.

The world frame (written in every calibration file, and the same as :mod:`holo.capture`'s):
floor at y = 0, +y up, metres, right-handed.

With calibration the board fixes the rest, wherever it stands:

- **up** is the normal of the floor found by RANSAC in the union of all solved cameras' clouds
  (expressed in the board's frame), pointing to the side the cameras are on (see
  :func:`find_floor` for how the board's axes steer the search);
- **origin** is the board's origin (the top-left corner of the printed pattern) dropped
  vertically onto that floor — so a board lying on the floor puts the world origin on its corner,
  and a board standing upright (on an easel or against a wall) puts it on the floor below that
  corner;
- **x** is the board's top edge (its x axis) laid flat on the floor; **z** = x × y.

When no floor is in view the board must be lying level (within 30° of the cameras' mean "up"):
it is then taken as lying on the floor, or ``board_height_m`` above it (a stated offset: a board
on a table), its normal is "up", and the result says so. A board that is neither level nor over a
visible floor leaves "up" unknown, and that is an error — nothing is guessed. When the floor is
found and a ``board_height_m`` was also stated, a disagreement over 3 cm is reported.

Without any calibration a single camera still finds the floor (the segmenter's RANSAC, see
:func:`holo.capture.world_from_floor`): the person then stands on it, upright.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from holo.errors import CalibrationError
from holo.geometry import Plane, fit_plane_ransac, refine_plane

__all__ = ["WorldFrame", "find_floor", "world_from_board"]

logger = logging.getLogger(__name__)

_LEVEL_DEG = 30.0
_HEIGHT_DISAGREEMENT_M = 0.03


@dataclass(frozen=True, slots=True, eq=False)
class WorldFrame:
    """``world_from_board`` and how it was found."""

    world_from_board: np.ndarray
    floor: Plane | None  # in the board frame, normal up
    board_height_m: float  # height of the board's origin above the floor
    board_tilt_deg: float  # angle between the board's face normal and up (0 lying flat, 90 upright)
    how: str
    warnings: list[str] = field(default_factory=list)


def find_floor(points: np.ndarray, cameras_up: np.ndarray, camera_centres: np.ndarray) -> Plane | None:
    """The floor in ``points`` (N x 3, the board's frame), normal up (towards the cameras).

    "Up" is first taken from the board: of its axes (face normal -z for a board lying flat; -y,
    towards its top edge, for one standing upright; ±x or +y for one turned on its side), each within
    60° of the cameras' mean up is a hint. For each hint RANSAC looks for the largest plane within
    35° of it that lies below every camera (by 20 cm or more) with at most 2 % of the points more than
    10 cm below it; the plane with the most support wins. A single camera pitched 45° down sees the
    floor 45° off its own "up", so the board's axes, not the camera's, steer the search.
    """
    if len(points) < 100:
        return None
    rng = np.random.default_rng(0)
    sample = points if len(points) <= 60_000 else points[rng.choice(len(points), 60_000, replace=False)]
    up = cameras_up / np.linalg.norm(cameras_up)
    axes = np.array([[0, 0, -1], [0, -1, 0], [0, 1, 0], [1, 0, 0], [-1, 0, 0]], np.float64)
    hints = [a for a in axes if a @ up >= math.cos(math.radians(60.0))] or [up]
    best: Plane | None = None
    for hint in hints:
        plane = fit_plane_ransac(
            sample,
            threshold_m=0.03,
            iterations=300,
            up_hint=hint,
            max_tilt_deg=35.0,
            min_inlier_fraction=0.05,
            max_below_fraction=0.02,
            below_margin_m=0.1,
        )
        if plane is None:
            continue
        plane = refine_plane(sample, plane, threshold_m=0.015) or plane
        heights = camera_centres @ plane.normal + plane.offset
        if np.any(heights < 0.2):
            logger.info("a level plane (up hint %s) is not below every camera (heights %s m)", hint, heights)
            continue
        if best is None or plane.inlier_fraction > best.inlier_fraction:
            best = plane
    return best


def world_from_board(
    floor: Plane | None,
    cameras_up: np.ndarray,
    *,
    board_height_m: float | None = None,
) -> WorldFrame:
    """The world frame in the board's frame (see the module docstring). ``cameras_up``: mean camera up."""
    face = np.array([0.0, 0.0, -1.0])  # the printed face's normal, in the board frame
    warnings: list[str] = []
    up_hint = cameras_up / np.linalg.norm(cameras_up)
    if floor is not None:
        up = floor.normal / np.linalg.norm(floor.normal)
        height = float(floor.offset)  # signed distance of the board origin (0, 0, 0) above the floor
        how = "floor found by RANSAC in the cameras' clouds; origin: the board's corner dropped onto it"
        if board_height_m is not None and abs(height - board_height_m) > _HEIGHT_DISAGREEMENT_M:
            warnings.append(
                f"the board's corner is {height:.2f} m above the floor the cameras see, not the stated "
                f"{board_height_m:.2f} m; the floor they see was used"
            )
    else:
        tilt_to_cameras = math.degrees(math.acos(float(np.clip(face @ up_hint, -1, 1))))
        if tilt_to_cameras > _LEVEL_DEG:
            raise CalibrationError(
                "no floor is in view and the board is not lying level, so which way is up is unknown: "
                "lay the board flat on the floor (or on a table with --board-height-m), or aim the cameras "
                "so that they see some floor"
            )
        up = face
        height = board_height_m or 0.0
        how = (
            f"no floor in view: the board is taken as lying level {height:.2f} m above the floor "
            "(--board-height-m); origin: its corner dropped onto the floor"
        )
        warnings.append(
            "no floor was found in the cameras' view; the board was assumed to lie "
            + (f"{height:.2f} m above the floor" if height else "on the floor")
        )
    x = np.array([1.0, 0.0, 0.0]) - up[0] * up
    if np.linalg.norm(x) < 0.5:  # the board's top edge is nearly vertical: use its left edge, upwards
        x = np.array([0.0, -1.0, 0.0]) - (-up[1]) * up
    x /= np.linalg.norm(x)
    z = np.cross(x, up)
    origin_in_board = -height * up  # the board origin dropped onto the floor
    rot = np.stack([x, up, z])  # rows: world axes in the board frame
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = -rot @ origin_in_board
    tilt = math.degrees(math.acos(float(np.clip(abs(face @ up), 0, 1))))
    return WorldFrame(m, floor, height, tilt, how, warnings)
