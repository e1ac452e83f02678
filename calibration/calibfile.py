"""``calibration.json``: where every camera stands in the world, and how well that is known.

Format (version 1)::

    {
      "format": "holo-calibration",
      "version": 1,
      "created": "2026-11-28T16:00:00+00:00",          # ISO 8601
      "world": {"convention": "floor at y = 0, +y up, metres", "origin": "...", ...},
      "board": {"type": "charuco", "dictionary": "DICT_5X5_100", "squares_x": 7, ...},
      "reference": "SERIAL",                            # the camera ICP aligned the others to
      "cameras": {
        "SERIAL": {
          "intrinsics": {"width": 1280, "height": 720, "fx": ..., "fy": ..., "cx": ..., "cy": ...},
          "world_from_camera": [[...4 rows of 4...]],   # metres, OpenCV camera axes
          "reprojection_error_px": 0.21,                # board corners, final pose
          "icp_rms_mm": 3.8,                            # null for the reference camera
          "date": "2026-11-28T16:00:00+00:00",
          ...                                           # more facts (how the pose was found)
        }
      }
    }

Loading checks everything and names the file in every error: the format tag; the version (a
newer one is refused with its number — it was written by a newer Holo); corrupt JSON (with line
and column); each camera's intrinsics; each ``world_from_camera`` must be 4 x 4, finite and rigid
(orthonormal rotation with determinant +1 within 1e-4, last row 0 0 0 1). Unknown extra fields
are kept and ignored (room to grow within version 1).

Writing never overwrites an existing file unless ``force`` is given, and is atomic: the JSON goes
to a temporary file in the same folder, which is then renamed over the target — a crash leaves
the old file or the new one, never half of one.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calibration.board import BoardSpec
from holo.errors import CalibrationError, HoloError
from holo.frame import Intrinsics

__all__ = [
    "FORMAT",
    "VERSION",
    "CalibrationFile",
    "CameraCalibration",
    "check_rigid",
    "check_writable",
    "load_calibration",
    "now_iso",
    "save_calibration",
]

FORMAT = "holo-calibration"
VERSION = 1
MAX_FILE_BYTES = 16 * 1024 * 1024


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def check_rigid(m: object, what: str) -> np.ndarray:
    """``m`` as a 4x4 float array, or a :class:`CalibrationError` saying why it is not a rigid transform."""
    try:
        a = np.asarray(m, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(f"{what} must be a 4x4 matrix of numbers") from None
    if a.shape != (4, 4):
        raise CalibrationError(f"{what} must be a 4x4 matrix, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise CalibrationError(f"{what} holds a non-finite number")
    if not np.allclose(a[3], [0.0, 0.0, 0.0, 1.0], atol=1e-9):
        raise CalibrationError(f"{what} must end with the row 0 0 0 1, got {a[3].tolist()}")
    r = a[:3, :3]
    if not np.allclose(r.T @ r, np.eye(3), atol=1e-4) or abs(np.linalg.det(r) - 1.0) > 1e-4:
        raise CalibrationError(f"{what} is not a rigid transform (its rotation part is not a rotation)")
    if np.abs(a[:3, 3]).max() > 1000.0:
        raise CalibrationError(f"{what} places the camera over a kilometre away")
    return a


@dataclass(frozen=True, slots=True, eq=False)
class CameraCalibration:
    """One camera's place in the world."""

    serial: str
    intrinsics: Intrinsics
    world_from_camera: np.ndarray
    reprojection_error_px: float | None
    icp_rms_mm: float | None
    date: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "intrinsics": self.intrinsics.to_dict(),
            "world_from_camera": [[float(v) for v in row] for row in self.world_from_camera],
            "reprojection_error_px": _round(self.reprojection_error_px, 3),
            "icp_rms_mm": _round(self.icp_rms_mm, 2),
            "date": self.date,
            **self.extra,
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


@dataclass(frozen=True, slots=True, eq=False)
class CalibrationFile:
    """A whole calibration: the board used, the world convention and every camera."""

    board: BoardSpec
    cameras: dict[str, CameraCalibration]
    created: str
    reference: str
    world: dict[str, Any] = field(default_factory=dict)

    def camera(self, serial: str) -> CameraCalibration:
        """The camera with this serial, or an error listing the serials the file knows."""
        try:
            return self.cameras[serial]
        except KeyError:
            known = ", ".join(sorted(self.cameras)) or "none"
            raise CalibrationError(
                f"camera {serial!r} is not in the calibration; it knows {known}. "
                "Calibrate this camera (holo calibrate cameras) or pick the matching --source"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "created": self.created,
            "world": self.world,
            "board": self.board.to_dict(),
            "reference": self.reference,
            "cameras": {serial: cam.to_dict() for serial, cam in self.cameras.items()},
        }

    @classmethod
    def from_dict(cls, data: object, *, source: str = "the calibration") -> CalibrationFile:
        def fail(message: str) -> CalibrationError:
            return CalibrationError(f"{source}: {message}")

        if not isinstance(data, dict):
            raise fail("is not a JSON object")
        if data.get("format") != FORMAT:
            raise fail(
                f"is not a Holo calibration file (its format is {data.get('format')!r}, expected {FORMAT!r})"
            )
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise fail(f"has an invalid version {version!r}")
        if version > VERSION:
            raise fail(
                f"is format version {version}, written by a newer Holo; this Holo reads version {VERSION}. "
                "Update Holo or calibrate again"
            )
        try:
            board = BoardSpec.from_dict(data.get("board"))
        except CalibrationError as exc:
            raise fail(str(exc)) from None
        cameras_data = data.get("cameras")
        if not isinstance(cameras_data, dict) or not cameras_data:
            raise fail("lists no cameras")
        cameras: dict[str, CameraCalibration] = {}
        for serial, cam in cameras_data.items():
            cameras[serial] = _camera_from_dict(serial, cam, fail)
        reference = data.get("reference", next(iter(cameras)))
        if reference not in cameras:
            raise fail(f"names reference camera {reference!r}, which it does not list")
        world = data.get("world", {})
        return cls(
            board=board,
            cameras=cameras,
            created=str(data.get("created", "")),
            reference=str(reference),
            world=world if isinstance(world, dict) else {},
        )


def _camera_from_dict(serial: str, cam: object, fail: Any) -> CameraCalibration:
    if not serial or not isinstance(cam, dict):
        raise fail(f"camera {serial!r} must be a non-empty serial with an object of values")
    try:
        intrinsics = Intrinsics.from_dict(cam.get("intrinsics") or {})
    except HoloError as exc:
        raise fail(f"camera {serial}: {exc}") from None
    try:
        world_from_camera = check_rigid(cam.get("world_from_camera"), f"camera {serial}'s world_from_camera")
    except CalibrationError as exc:
        raise fail(str(exc)) from None
    numbers: dict[str, float | None] = {}
    for key in ("reprojection_error_px", "icp_rms_mm"):
        value = cam.get(key)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise fail(f"camera {serial}: {key} must be a non-negative number or null, got {value!r}")
        numbers[key] = None if value is None else float(value)
    date = cam.get("date", "")
    if date:
        try:
            dt.datetime.fromisoformat(str(date))
        except ValueError:
            raise fail(f"camera {serial}: date {date!r} is not an ISO 8601 date") from None
    known = {"intrinsics", "world_from_camera", "reprojection_error_px", "icp_rms_mm", "date"}
    return CameraCalibration(
        serial=serial,
        intrinsics=intrinsics,
        world_from_camera=world_from_camera,
        reprojection_error_px=numbers["reprojection_error_px"],
        icp_rms_mm=numbers["icp_rms_mm"],
        date=str(date),
        extra={k: v for k, v in cam.items() if k not in known},
    )


def load_calibration(path: str) -> CalibrationFile:
    """Read and check a calibration file (see the module docstring)."""
    if not os.path.exists(path):
        raise CalibrationError(f"calibration file {path} does not exist")
    if os.path.isdir(path):
        raise CalibrationError(f"calibration file {path} is a folder, expected a JSON file")
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise CalibrationError(f"calibration file {path} is {size} bytes, too large to be a calibration")
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise CalibrationError(f"calibration file {path} could not be read: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CalibrationError(f"calibration file {path} is not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise CalibrationError(
            f"calibration file {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    return CalibrationFile.from_dict(data, source=f"calibration file {path}")


def save_calibration(calibration: CalibrationFile, path: str, *, force: bool = False) -> None:
    """Write atomically; refuse to replace an existing file unless ``force``."""
    check_writable(path, force=force)
    folder = os.path.dirname(os.path.abspath(path))
    text = json.dumps(calibration.to_dict(), indent=2) + "\n"
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            _publish_new(tmp, path)
    except FileExistsError:
        raise CalibrationError(f"{path} already exists; pass --force to overwrite it") from None
    except OSError as exc:
        raise CalibrationError(f"could not write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _publish_new(tmp: str, path: str) -> None:
    """Give ``tmp`` the name ``path`` only if no file has it (a hard link fails if one appeared)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links
        if os.path.exists(path):
            raise FileExistsError(path) from None
        os.replace(tmp, path)


def check_writable(path: str, *, force: bool) -> None:
    """Refuse early (before any work) a target that exists without ``force`` or whose folder is missing."""
    if os.path.isdir(path):
        raise CalibrationError(
            f"{path} is a folder; give a file name such as {os.path.join(path, 'calibration.json')}"
        )
    if os.path.exists(path) and not force:
        raise CalibrationError(f"{path} already exists; pass --force to overwrite it")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CalibrationError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise CalibrationError(f"cannot write {path}: the folder {folder} is not writable")
