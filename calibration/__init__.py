"""Calibration: a printable ChArUco board, every camera's pose in one floor-aligned world, and the
calibration file that carries it (``world_from_camera`` per camera serial, with its residuals).

Modules, one job each: :mod:`~calibration.board` (board definition, printable page),
:mod:`~calibration.detect` (find the board, lift its corners with depth), :mod:`~calibration.solve`
(a camera's pose from the board), :mod:`~calibration.refine` (ICP on the cameras' overlap),
:mod:`~calibration.floor` (the floor and the world frame), :mod:`~calibration.rig` (all of it for a
rig), :mod:`~calibration.calibfile` (the JSON file), :mod:`~calibration.fuse` (several calibrated
cameras' person clouds into one) and :mod:`~calibration.cli` (``holo calibrate``).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

# Imported on first use: the board and the file need no Open3D, ICP does.
_EXPORTS = {
    "BoardSpec": "calibration.board",
    "board_for_page": "calibration.board",
    "render_board_page": "calibration.board",
    "write_board": "calibration.board",
    "CalibrationFile": "calibration.calibfile",
    "CameraCalibration": "calibration.calibfile",
    "load_calibration": "calibration.calibfile",
    "save_calibration": "calibration.calibfile",
    "fuse_clouds": "calibration.fuse",
    "match_cameras": "calibration.fuse",
    "voxel_merge": "calibration.fuse",
    "RigOptions": "calibration.rig",
    "RigResult": "calibration.rig",
    "calibrate_rig": "calibration.rig",
}

__all__ = sorted(_EXPORTS)

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'calibration' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
