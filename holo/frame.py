"""The data model: camera intrinsics, RGB-D frames, person clouds and skeletons.

Conventions (see DESIGN.md):

- Camera frame: OpenCV's, x right, y down, z forward, metres.
- World frame: y up, the floor at y = 0, metres (set by calibration, or by the floor finder).
- Transforms are named ``<to>_from_<from>`` (``world_from_camera``: 4x4, metres).
- Instants are ``*_ns`` (int nanoseconds since the Unix epoch), durations ``*_s``.
- Depth is metres (float32) in memory; 0 marks an invalid pixel. Millimetres only in uint16 images.
- Colour is RGB, uint8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from holo.errors import IntrinsicsError, SourceError

__all__ = [
    "POSE_BONES",
    "POSE_JOINT_NAMES",
    "CoordinateFrame",
    "Intrinsics",
    "PersonCloud",
    "RGBDFrame",
    "Skeleton",
    "depth_from_units",
]

CoordinateFrame = Literal["camera", "world"]

#: MediaPipe Pose's 33 landmarks, in its order.
POSE_JOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye_inner",
    "left_eye",
    "left_eye_outer",
    "right_eye_inner",
    "right_eye",
    "right_eye_outer",
    "left_ear",
    "right_ear",
    "mouth_left",
    "mouth_right",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_pinky",
    "right_pinky",
    "left_index",
    "right_index",
    "left_thumb",
    "right_thumb",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "left_heel",
    "right_heel",
    "left_foot_index",
    "right_foot_index",
)

#: MediaPipe Pose's bones: pairs of indices into :data:`POSE_JOINT_NAMES` (the viewer draws these
#: lines; ``holo export --foxglove`` writes them).
POSE_BONES: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12), (11, 13), (13, 15),
    (15, 17), (15, 19), (15, 21), (17, 19), (12, 14), (14, 16), (16, 18), (16, 20), (16, 22), (18, 20),
    (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28), (27, 29), (28, 30), (29, 31),
    (30, 32), (27, 31), (28, 32),
)  # fmt: skip

_MAX_IMAGE_SIDE = 16384


def depth_from_units(units: np.ndarray, depth_unit_m: float) -> np.ndarray:
    """Depth in metres (float32) from integer sensor units — the one formula every source and codec
    uses, so a depth image coded as units decodes to bit-identical metres."""
    return np.multiply(units, np.float32(depth_unit_m), dtype=np.float32)


@dataclass(frozen=True, slots=True)
class Intrinsics:
    """A pinhole camera: image size in pixels, focal lengths and principal point in pixels.

    Lens distortion is removed by the source before a frame leaves it, so a plain pinhole model is
    all later stages need. Construction refuses values no real camera has.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or not 1 <= int(value) <= _MAX_IMAGE_SIDE:
                raise IntrinsicsError(
                    f"intrinsics {name} must be an integer between 1 and {_MAX_IMAGE_SIDE} pixels, got {value!r}"
                )
        for name in ("fx", "fy", "cx", "cy"):
            value = getattr(self, name)
            if not isinstance(value, int | float | np.floating | np.integer) or not math.isfinite(
                float(value)
            ):
                raise IntrinsicsError(f"intrinsics {name} must be a finite number of pixels, got {value!r}")
        # A focal length gives a field of view; anything outside 5..170 degrees is not a depth camera.
        for name, focal, side in (("fx", self.fx, self.width), ("fy", self.fy, self.height)):
            if focal <= 0:
                raise IntrinsicsError(f"intrinsics {name} must be positive, got {focal}")
            fov_deg = math.degrees(2 * math.atan(side / (2 * focal)))
            if not 5.0 <= fov_deg <= 170.0:
                raise IntrinsicsError(
                    f"intrinsics {name}={focal:g} px on a {side}-pixel side gives a {fov_deg:.1f}° field of view; "
                    "expected 5–170°"
                )
        if not (-0.5 <= self.cx <= self.width + 0.5 and -0.5 <= self.cy <= self.height + 0.5):
            raise IntrinsicsError(
                f"principal point ({self.cx:g}, {self.cy:g}) lies outside the {self.width}×{self.height} image"
            )

    @property
    def matrix(self) -> np.ndarray:
        """The 3x3 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width), as numpy images are indexed."""
        return (self.height, self.width)

    def scaled(self, width: int, height: int) -> Intrinsics:
        """The same camera resampled to a different image size."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(
            width=width,
            height=height,
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=(self.cx + 0.5) * sx - 0.5,
            cy=(self.cy + 0.5) * sy - 0.5,
        )

    @classmethod
    def from_fov(cls, width: int, height: int, horizontal_fov_deg: float) -> Intrinsics:
        """A centred camera with square pixels and the given horizontal field of view."""
        f = width / (2 * math.tan(math.radians(horizontal_fov_deg) / 2))
        return cls(width=width, height=height, fx=f, fy=f, cx=(width - 1) / 2, cy=(height - 1) / 2)

    def to_dict(self) -> dict[str, float | int]:
        return {
            "width": self.width,
            "height": self.height,
            "fx": self.fx,
            "fy": self.fy,
            "cx": self.cx,
            "cy": self.cy,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Intrinsics:
        try:
            return cls(
                width=int(data["width"]),  # type: ignore[call-overload]
                height=int(data["height"]),  # type: ignore[call-overload]
                fx=float(data["fx"]),  # type: ignore[arg-type]
                fy=float(data["fy"]),  # type: ignore[arg-type]
                cx=float(data["cx"]),  # type: ignore[arg-type]
                cy=float(data["cy"]),  # type: ignore[arg-type]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IntrinsicsError(
                f"intrinsics need width, height, fx, fy, cx, cy as numbers: {exc}"
            ) from None


@dataclass(frozen=True, slots=True, eq=False)
class RGBDFrame:
    """One synchronised colour + depth image pair, depth registered to colour.

    ``color`` is HxWx3 RGB uint8 or ``None`` for a depth-only camera; ``depth_m`` is HxW float32
    metres with 0 for invalid pixels; both share ``intrinsics``. ``depth_unit_m`` is the sensor's
    depth step (0.001 for millimetre images), which lets a codec store depth losslessly.
    """

    depth_m: np.ndarray
    color: np.ndarray | None
    intrinsics: Intrinsics
    capture_time_ns: int
    sequence: int
    serial: str = "camera"
    depth_unit_m: float = 0.001
    #: False for colour-only cameras (webcam, video): depth_m is all zeros and the person's depth
    #: comes from body tracking (a relief; see holo.relief).
    has_depth: bool = True
    #: Ground-truth person mask, only from sources that know it (the synthetic performer).
    truth_mask: np.ndarray | None = None
    #: Ground-truth skeleton in the camera frame, only from the synthetic performer.
    truth_skeleton: Skeleton | None = None

    def __post_init__(self) -> None:
        depth = self.depth_m
        if not isinstance(depth, np.ndarray) or depth.ndim != 2 or depth.dtype != np.float32:
            raise SourceError(
                f"{self.serial}: depth must be a 2-D float32 image in metres, got "
                f"{getattr(depth, 'dtype', type(depth).__name__)} of shape {getattr(depth, 'shape', '?')}"
            )
        if depth.shape != self.intrinsics.shape:
            raise SourceError(
                f"{self.serial}: depth is {depth.shape[1]}×{depth.shape[0]} but the intrinsics describe "
                f"{self.intrinsics.width}×{self.intrinsics.height}"
            )
        if self.color is not None:
            color = self.color
            if color.ndim != 3 or color.shape[2] != 3 or color.dtype != np.uint8:
                raise SourceError(
                    f"{self.serial}: colour must be an HxWx3 uint8 RGB image, got {color.dtype} of shape {color.shape}"
                )
            if color.shape[:2] != depth.shape:
                raise SourceError(
                    f"{self.serial}: colour is {color.shape[1]}×{color.shape[0]} but depth is "
                    f"{depth.shape[1]}×{depth.shape[0]}; depth must be registered to colour at the same size"
                )

    @property
    def shape(self) -> tuple[int, int]:
        return self.intrinsics.shape


@dataclass(frozen=True, slots=True, eq=False)
class Skeleton:
    """33 body joints (MediaPipe Pose order) in metres, with a visibility in [0, 1] per joint."""

    joints_m: np.ndarray  # (33, 3) float32
    visibility: np.ndarray  # (33,) float32
    frame: CoordinateFrame = "camera"

    def __post_init__(self) -> None:
        n = len(POSE_JOINT_NAMES)
        if self.joints_m.shape != (n, 3) or self.visibility.shape != (n,):
            raise ValueError(
                f"a skeleton has {n} joints; got {self.joints_m.shape} and {self.visibility.shape}"
            )

    def transformed(self, to_from_frame: np.ndarray, frame: CoordinateFrame) -> Skeleton:
        joints = self.joints_m @ to_from_frame[:3, :3].T + to_from_frame[:3, 3]
        return Skeleton(joints_m=joints.astype(np.float32), visibility=self.visibility, frame=frame)


@dataclass(frozen=True, slots=True, eq=False)
class PersonCloud:
    """The coloured point cloud of a person at one instant.

    ``points_m`` (N x 3 float32) are in ``frame`` coordinates. A cloud from a single camera keeps
    the pixel each point came from (``pixels``, N x 2 uint16 as u, v), the camera's ``intrinsics``
    and ``depth_unit_m``: a codec can then code it as a range image. ``world_from_camera`` places
    the camera in the world when it is known (from calibration or the floor finder).
    """

    points_m: np.ndarray
    colors: np.ndarray
    capture_time_ns: int
    sequence: int
    participant: str = "me"
    frame: CoordinateFrame = "camera"
    intrinsics: Intrinsics | None = None
    pixels: np.ndarray | None = None
    depth_unit_m: float | None = None
    world_from_camera: np.ndarray | None = None
    skeleton: Skeleton | None = None
    serial: str = "camera"
    #: Why the cloud is empty or degraded ("no person in view", ...); empty when all is well.
    status: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.points_m)
        if self.points_m.shape != (n, 3) or self.points_m.dtype != np.float32:
            raise ValueError(
                f"points_m must be (N, 3) float32, got {self.points_m.dtype} {self.points_m.shape}"
            )
        if self.colors.shape != (n, 3) or self.colors.dtype != np.uint8:
            raise ValueError(f"colors must be ({n}, 3) uint8, got {self.colors.dtype} {self.colors.shape}")
        if self.pixels is not None and self.pixels.shape != (n, 2):
            raise ValueError(f"pixels must be ({n}, 2), got {self.pixels.shape}")

    def __len__(self) -> int:
        return len(self.points_m)

    @property
    def organized(self) -> bool:
        """True when every point knows its pixel in one camera image (a range image can code it)."""
        return self.pixels is not None and self.intrinsics is not None and self.frame == "camera"

    def points_in_world(self) -> np.ndarray:
        """The points in the world frame (the camera frame when no placement is known)."""
        if self.frame == "world" or self.world_from_camera is None:
            return self.points_m
        m = self.world_from_camera
        return (self.points_m @ m[:3, :3].T.astype(np.float32) + m[:3, 3].astype(np.float32)).astype(
            np.float32
        )

    def in_world(self) -> PersonCloud:
        """This cloud expressed in the world frame (itself if already there or not placed)."""
        if self.frame == "world" or self.world_from_camera is None:
            return self
        skeleton = self.skeleton.transformed(self.world_from_camera, "world") if self.skeleton else None
        return replace(self, points_m=self.points_in_world(), frame="world", pixels=None, skeleton=skeleton)

    def with_(self, **changes: object) -> PersonCloud:
        return replace(self, **changes)  # type: ignore[arg-type]
