"""Calibrating a rig: every camera's frame of the board in, a checked :class:`CalibrationFile` out.

1. Each camera's pose from the board (:mod:`calibration.solve`). Cameras that did not see it are
   listed with the reason; with several cameras at least two must be solved (one camera alone is a
   valid rig: it is placed on the floor by the board). Nothing is guessed for an unsolved camera:
   it is left out of the file and reported.
2. ICP on the overlap of the cameras' whole clouds, the first solved camera as reference
   (:mod:`calibration.refine`); then the board's pose is fitted once more to every camera's lifted
   corners together (their errors average out, instead of the reference camera's view alone
   setting the world).
3. The floor by RANSAC in the union of the aligned clouds, and the world frame it sets with the
   board (:mod:`calibration.floor`).
4. Per camera: ``world_from_camera``, the reprojection error of the board's corners under the final
   pose (px), the ICP residual (mm), and warnings in plain words where a figure is poor
   (reprojection error over ``max_reprojection_px`` = 1 px, residual over ``max_residual_mm`` = 10 mm).

Several frames of a still scene make a better calibration than one: :func:`average_frames` takes
the per-pixel median depth of up to N frames (which shrinks depth noise by ~1.25/sqrt(N)) and the
last frame's colour.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from dataclasses import dataclass, field

import numpy as np

from calibration.board import BoardSpec
from calibration.calibfile import CalibrationFile, CameraCalibration, now_iso
from calibration.floor import WorldFrame, find_floor, world_from_board
from calibration.refine import POOR_RESIDUAL_MM, IcpResult, camera_cloud, refine_poses
from calibration.solve import BoardPose, PoseFailure, reprojection_error_px, robust_kabsch, solve_board_pose
from holo.errors import CalibrationError
from holo.frame import RGBDFrame

__all__ = ["RigOptions", "RigResult", "average_frames", "calibrate_rig"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RigOptions:
    icp: bool = True
    colour_icp: bool = True
    #: Height of the board's origin above the floor when no floor is in view (a stated offset).
    board_height_m: float | None = None
    max_residual_mm: float = POOR_RESIDUAL_MM
    max_reprojection_px: float = 1.0


@dataclass(frozen=True, slots=True, eq=False)
class RigResult:
    calibration: CalibrationFile
    poses: list[BoardPose]
    failures: list[PoseFailure]
    icp: list[IcpResult]
    world: WorldFrame
    warnings: list[str] = field(default_factory=list)


def average_frames(frames: list[RGBDFrame]) -> RGBDFrame:
    """One frame of a still scene: the per-pixel median of the valid depths, the last colour.

    A pixel valid in fewer than half of the frames (a flickering edge) is left invalid.
    """
    if len(frames) == 1:
        return frames[0]
    stack = np.stack([f.depth_m for f in frames]).astype(np.float32)
    valid = stack > 0
    stack[~valid] = np.nan
    enough = valid.sum(axis=0) * 2 >= len(frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: left invalid below
        depth = np.nanmedian(stack, axis=0)
    depth = np.where(enough & np.isfinite(depth), depth, 0.0).astype(np.float32)
    return dataclasses.replace(frames[-1], depth_m=depth)


def _failure_list(failures: list[PoseFailure]) -> str:
    return "; ".join(f"camera {f.serial}: {f.reason}" for f in failures)


def calibrate_rig(frames: list[RGBDFrame], spec: BoardSpec, options: RigOptions | None = None) -> RigResult:
    """Calibrate the cameras that saw the board in ``frames`` (one frame per camera)."""
    options = options or RigOptions()
    serials = [f.serial for f in frames]
    if len(set(serials)) != len(serials):
        raise CalibrationError(
            f"two sources report the same camera serial ({', '.join(serials)}); serials must differ"
        )
    results = [solve_board_pose(f, spec) for f in frames]
    poses = [r for r in results if isinstance(r, BoardPose)]
    failures = [r for r in results if isinstance(r, PoseFailure)]
    if not poses:
        raise CalibrationError(f"no camera saw the board ({_failure_list(failures)})")
    if len(frames) > 1 and len(poses) < 2:
        raise CalibrationError(
            f"the board was seen by only one camera ({poses[0].serial}); {_failure_list(failures)}. "
            "Place the board where at least two cameras see it at once and run again"
        )
    notes = [
        f"camera {f.serial} was not calibrated: {f.reason}; it is left out of the file" for f in failures
    ]
    solved = [f for f in frames if f.serial in {p.serial for p in poses}]
    board_from_camera = [np.linalg.inv(p.camera_from_board) for p in poses]
    clouds = [camera_cloud(f) for f in solved]
    if options.icp and len(poses) > 1:
        icp = refine_poses([p.serial for p in poses], clouds, board_from_camera, colour=options.colour_icp)
    else:
        icp = [
            IcpResult(p.serial, m, float("nan"), 0, "reference" if i == 0 else "board", "ICP off")
            for i, (p, m) in enumerate(zip(poses, board_from_camera))
        ]
    # The board as all cameras see it at once: one fit of every camera's lifted corners, averaging
    # their errors, now that ICP has put the cameras in one frame.
    board_fix = np.linalg.inv(_joint_board(poses, [r.common_from_camera for r in icp], spec))
    refined = [board_fix @ r.common_from_camera for r in icp]
    union = np.concatenate(
        [np.asarray(c.points) @ m[:3, :3].T + m[:3, 3] for c, m in zip(clouds, refined)], axis=0
    )
    centres = np.array([m[:3, 3] for m in refined])
    cameras_up = np.mean([m[:3, :3] @ np.array([0.0, -1.0, 0.0]) for m in refined], axis=0)
    floor = find_floor(union, cameras_up, centres)
    world = world_from_board(floor, cameras_up, board_height_m=options.board_height_m)
    notes += world.warnings
    date = now_iso()
    cameras: dict[str, CameraCalibration] = {}
    for pose, result, final in zip(poses, icp, refined):
        reproj = reprojection_error_px(np.linalg.inv(final), pose.detection, spec, pose.intrinsics)
        residual = result.rms_mm if result.method != "reference" else None
        cameras[pose.serial] = CameraCalibration(
            serial=pose.serial,
            intrinsics=pose.intrinsics,
            world_from_camera=world.world_from_board @ final,
            reprojection_error_px=reproj,
            icp_rms_mm=residual,
            date=date,
            extra={
                "board_corners": pose.corners,
                "pose_method": pose.method,
                "board_reprojection_error_px": round(pose.reprojection_error_px, 3),
                "icp": result.method,
                "icp_overlap_points": result.overlap_points,
                **({"icp_note": result.note} if result.note else {}),
            },
        )
        notes += _figure_warnings(pose.serial, reproj, result, options)
    calibration = CalibrationFile(
        board=spec,
        cameras=cameras,
        created=date,
        reference=poses[0].serial,
        world={
            "convention": "floor at y = 0, +y up, metres; x along the board's top edge laid on the floor",
            "origin": "the board's origin (top-left corner of the pattern) dropped onto the floor",
            "how": world.how,
            "floor_found": world.floor is not None,
            "floor_rms_mm": None if world.floor is None else round(world.floor.rms_m * 1000, 2),
            "board_height_m": round(world.board_height_m, 4),
            "board_tilt_deg": round(world.board_tilt_deg, 2),
        },
    )
    for w in notes:  # returned to the caller, who shows them; logged for the record
        logger.info("calibration: %s", w)
    return RigResult(calibration, poses, failures, icp, world, notes)


def _joint_board(poses: list[BoardPose], common_from_camera: list[np.ndarray], spec: BoardSpec) -> np.ndarray:
    """``common_from_board`` fitted to every camera's lifted corners together (Kabsch, outliers dropped)."""
    src, dst = [], []
    for pose, m in zip(poses, common_from_camera):
        if len(pose.corner_ids):
            src.append(spec.corners_in_board()[pose.corner_ids])
            dst.append(pose.corners_in_camera @ m[:3, :3].T + m[:3, 3])
    fit = robust_kabsch(np.concatenate(src), np.concatenate(dst)) if src else None
    if fit is None:
        return common_from_camera[0] @ poses[0].camera_from_board
    logger.info("board seen by %d camera(s) together: corner fit %.1f mm RMS", len(src), fit[2] * 1000)
    return fit[0]


def _figure_warnings(serial: str, reproj: float, result: IcpResult, options: RigOptions) -> list[str]:
    out = []
    if not reproj <= options.max_reprojection_px:
        out.append(
            f"camera {serial}: the board's corners lie {reproj:.2f} px from where its pose puts them "
            f"(more than {options.max_reprojection_px:g} px): check its intrinsics and that the board is flat"
        )
    if result.method == "board" and result.note and result.note != "ICP off":
        out.append(f"camera {serial}: ICP was not applied ({result.note}); its pose rests on the board alone")
    if result.method != "reference" and result.rms_mm > options.max_residual_mm:
        out.append(
            f"camera {serial}: its cloud lies {result.rms_mm:.1f} mm RMS from the other cameras' "
            f"(poor: more than {options.max_residual_mm:g} mm); surfaces will look doubled. "
            "Recalibrate with the board nearer or larger in view"
        )
    return out
