"""Camera maths for the viewer: look-at views, perspective projections, an orbit controller.

Matrices are 4x4 float32, column vectors (``clip = proj @ view @ world``), right-handed, y up; GL's
clip conventions (depth -1..1). Passed to GLSL they are transposed into column-major order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["OrbitCamera", "default_camera", "look_at", "perspective", "perspective_from_fov", "pose_matrix"]


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray | None = None) -> np.ndarray:
    """``view`` (eye_from_world) for an eye at ``eye`` looking at ``target``."""
    up = np.array([0.0, 1.0, 0.0]) if up is None else np.asarray(up, float)
    f = np.asarray(target, float) - np.asarray(eye, float)
    f /= np.linalg.norm(f)
    s = np.cross(f, up)
    if np.linalg.norm(s) < 1e-9:  # looking straight up or down
        s = np.cross(f, np.array([0.0, 0.0, 1.0]))
    s /= np.linalg.norm(s)
    u = np.cross(s, f)
    m = np.eye(4)
    m[0, :3], m[1, :3], m[2, :3] = s, u, -f
    m[:3, 3] = -m[:3, :3] @ np.asarray(eye, float)
    return m.astype(np.float32)


def perspective(fovy_deg: float, aspect: float, near: float = 0.05, far: float = 50.0) -> np.ndarray:
    t = 1.0 / math.tan(math.radians(fovy_deg) / 2)
    m = np.zeros((4, 4), np.float32)
    m[0, 0] = t / aspect
    m[1, 1] = t
    m[2, 2] = (far + near) / (near - far)
    m[2, 3] = 2 * far * near / (near - far)
    m[3, 2] = -1.0
    return m


def perspective_from_fov(
    angle_left: float,
    angle_right: float,
    angle_up: float,
    angle_down: float,
    near: float = 0.05,
    far: float = 50.0,
) -> np.ndarray:
    """An asymmetric frustum from OpenXR's field-of-view angles (radians; left and down negative)."""
    left, right = math.tan(angle_left), math.tan(angle_right)
    up, down = math.tan(angle_up), math.tan(angle_down)
    m = np.zeros((4, 4), np.float32)
    m[0, 0] = 2 / (right - left)
    m[0, 2] = (right + left) / (right - left)
    m[1, 1] = 2 / (up - down)
    m[1, 2] = (up + down) / (up - down)
    m[2, 2] = -(far + near) / (far - near)
    m[2, 3] = -2 * far * near / (far - near)
    m[3, 2] = -1.0
    return m


def pose_matrix(
    orientation_xyzw: tuple[float, float, float, float], position: tuple[float, float, float]
) -> np.ndarray:
    """``world_from_eye`` for a pose given as a unit quaternion (x, y, z, w) and a position."""
    x, y, z, w = orientation_xyzw
    m = np.eye(4)
    m[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    m[:3, 3] = position
    return m


@dataclass
class OrbitCamera:
    """A camera orbiting a target: drag to orbit, scroll to zoom, shift-drag (or right) to pan."""

    target: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.0, -2.0]))
    distance_m: float = 2.6
    yaw_rad: float = 0.0  # 0: looking along -z from +z
    pitch_rad: float = -0.08
    fovy_deg: float = 50.0

    def __post_init__(self) -> None:
        self._home = (self.target.copy(), self.distance_m, self.yaw_rad, self.pitch_rad)

    def reset(self) -> None:
        target, self.distance_m, self.yaw_rad, self.pitch_rad = self._home
        self.target = target.copy()

    @property
    def eye(self) -> np.ndarray:
        cp = math.cos(self.pitch_rad)
        offset = np.array(
            [math.sin(self.yaw_rad) * cp, -math.sin(self.pitch_rad), math.cos(self.yaw_rad) * cp]
        )
        return self.target + self.distance_m * offset

    def view(self) -> np.ndarray:
        return look_at(self.eye, self.target)

    def projection(self, aspect: float) -> np.ndarray:
        return perspective(self.fovy_deg, aspect)

    def orbit(self, dx_px: float, dy_px: float) -> None:
        self.yaw_rad -= dx_px * 0.005
        self.pitch_rad = float(np.clip(self.pitch_rad - dy_px * 0.005, -1.4, 1.4))

    def zoom(self, steps: float) -> None:
        self.distance_m = float(np.clip(self.distance_m * (0.9**steps), 0.3, 30.0))

    def pan(self, dx_px: float, dy_px: float) -> None:
        view = self.view()
        right, up = view[0, :3], view[1, :3]
        scale = self.distance_m * 0.0015
        self.target = self.target - right * dx_px * scale + up * dy_px * scale


def default_camera() -> OrbitCamera:
    """Standing 2.6 m in front of the first seat, eyes level with a person's chest."""
    return OrbitCamera(target=np.array([0.0, 1.0, -2.0]), distance_m=2.9, pitch_rad=-0.05)
