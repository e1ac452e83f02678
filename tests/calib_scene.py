"""Synthetic multi-camera RGB-D scenes with ground truth, for the calibration tests.

A scene is a floor (y = 0, a grey checker), optionally a printed ChArUco board (a textured quad:
each ray that hits it samples the board image at the hit point's board coordinates; its back is
plain paper) and optionally a person-sized body (ellipsoids and capsules as Open3D meshes). Open3D's
ray caster renders it from virtual cameras at known poses (OpenCV axes; world y up):

- colour: 3 x 3 rays per pixel, averaged (anti-aliased, so ChArUco corners refine to sub-pixel);
- depth, registered to colour: one ray per pixel centre, camera z with noise growing with
  distance (sigma = 1.2 mm * z^2 / m^2: 1.2 mm at 1 m, 4.8 mm at 2 m, 11 mm at 3 m), quantised
  to millimetres, and 0.2 % dropouts.

Frames can be written as ``rgbd:`` folders (``<key>_color.png``, ``<key>_depth_mm.png``,
``intrinsics.json``) whose folder name is the camera serial.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import open3d as o3d

from calibration.board import BoardSpec
from holo.frame import Intrinsics, RGBDFrame, depth_from_units

DEPTH_NOISE_PER_M2 = 0.0012
CAMERA = Intrinsics(width=1280, height=720, fx=914.0, fy=914.0, cx=639.5, cy=359.5)
PAPER_MARGIN_M = 0.015
_TEXELS_PER_SQUARE = 40


@dataclass(frozen=True)
class VirtualCamera:
    serial: str
    world_from_camera: np.ndarray
    intrinsics: Intrinsics = CAMERA


def look_at(eye: tuple[float, float, float], target: tuple[float, float, float]) -> np.ndarray:
    """``world_from_camera`` of an upright camera at ``eye`` looking at ``target`` (OpenCV axes)."""
    e, t = np.asarray(eye, float), np.asarray(target, float)
    f = (t - e) / np.linalg.norm(t - e)
    r = np.cross(f, [0.0, 1.0, 0.0])
    r /= np.linalg.norm(r)
    d = np.cross(f, r)
    m = np.eye(4)
    m[:3, :3] = np.stack([r, d, f], axis=1)
    m[:3, 3] = e
    return m


def ring_camera(
    serial: str, azimuth_deg: float, *, radius_m: float, height_m: float, target: tuple[float, float, float]
) -> VirtualCamera:
    a = math.radians(azimuth_deg)
    eye = (target[0] + radius_m * math.sin(a), height_m, target[2] + radius_m * math.cos(a))
    return VirtualCamera(serial, look_at(eye, target))


def rotation_error_deg(a: np.ndarray, b: np.ndarray) -> float:
    r = a[:3, :3].T @ b[:3, :3]
    return math.degrees(math.acos(float(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))))


def translation_error_m(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a[:3, 3] - b[:3, 3]))


def perturb(m: np.ndarray, *, shift_m: float, angle_deg: float, seed: int = 0) -> np.ndarray:
    """``m`` moved by ``shift_m`` and turned by ``angle_deg`` about its own centre (random directions)."""
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    rot, _ = cv2.Rodrigues(axis * math.radians(angle_deg))
    out = m.copy()
    out[:3, :3] = rot @ m[:3, :3]
    out[:3, 3] = m[:3, 3] + shift_m * direction
    return out


def _capsule(a: np.ndarray, b: np.ndarray, radius: float) -> o3d.geometry.TriangleMesh:
    length = float(np.linalg.norm(b - a))
    mesh = o3d.geometry.TriangleMesh.create_cylinder(radius, length, resolution=24, split=4)
    axis = (b - a) / length
    z = np.array([0.0, 0.0, 1.0])
    v = np.cross(z, axis)
    if np.linalg.norm(v) > 1e-9:
        rot, _ = cv2.Rodrigues(v / np.linalg.norm(v) * math.acos(float(np.clip(z @ axis, -1, 1))))
        mesh.rotate(rot, center=(0, 0, 0))
    mesh.translate((a + b) / 2)
    for end in (a, b):
        cap = o3d.geometry.TriangleMesh.create_sphere(radius, resolution=16)
        cap.translate(end)
        mesh += cap
    return mesh


def _ellipsoid(
    center: tuple[float, float, float], radii: tuple[float, float, float]
) -> o3d.geometry.TriangleMesh:
    mesh = o3d.geometry.TriangleMesh.create_sphere(1.0, resolution=24)
    v = np.asarray(mesh.vertices) * np.asarray(radii) + np.asarray(center)
    mesh.vertices = o3d.utility.Vector3dVector(v)
    return mesh


def body_parts(
    at_xz: tuple[float, float], yaw_deg: float = 0.0
) -> list[tuple[o3d.geometry.TriangleMesh, tuple[int, int, int]]]:
    """A 1.75 m person standing at ``at_xz`` on the floor, as (mesh, colour) parts."""
    shirt, trousers, skin, shoe = (40, 110, 200), (60, 50, 45), (224, 172, 140), (30, 30, 35)
    p = np.array
    parts = [
        (_ellipsoid((0, 1.28, 0), (0.17, 0.26, 0.11)), shirt),
        (_ellipsoid((0, 0.95, 0), (0.165, 0.13, 0.115)), trousers),
        (_ellipsoid((0, 1.63, 0), (0.085, 0.115, 0.1)), skin),
        (_capsule(p([0, 1.45, 0]), p([0, 1.55, 0]), 0.05), skin),
        (_capsule(p([-0.2, 1.44, 0]), p([0.2, 1.44, 0]), 0.065), shirt),
    ]
    for sx in (-1.0, 1.0):
        parts += [
            (_capsule(p([0.2 * sx, 1.43, 0]), p([0.25 * sx, 1.12, 0.02]), 0.05), shirt),
            (_capsule(p([0.25 * sx, 1.12, 0.02]), p([0.27 * sx, 0.82, -0.04]), 0.042), skin),
            (_capsule(p([0.09 * sx, 0.9, 0]), p([0.1 * sx, 0.5, 0.01]), 0.075), trousers),
            (_capsule(p([0.1 * sx, 0.5, 0.01]), p([0.1 * sx, 0.1, 0.0]), 0.058), trousers),
            (_capsule(p([0.1 * sx, 0.045, 0.05]), p([0.11 * sx, 0.045, -0.14]), 0.045), shoe),
        ]
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    for mesh, _ in parts:
        mesh.rotate(rot, center=(0, 0, 0))
        mesh.translate((at_xz[0], 0.0, at_xz[1]))
    return parts


def board_on_floor(origin_xz: tuple[float, float], yaw_deg: float = 0.0, lift_m: float = 0.001) -> np.ndarray:
    """``world_from_board`` of a board lying face up on the floor (its origin at ``origin_xz``)."""
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    x = np.array([c, 0.0, -s])
    z = np.array([0.0, -1.0, 0.0])  # into the board = down
    y = np.cross(z, x)
    m = np.eye(4)
    m[:3, :3] = np.stack([x, y, z], axis=1)
    m[:3, 3] = (origin_xz[0], lift_m, origin_xz[1])
    return m


def board_on_easel(
    bottom_centre_xz: tuple[float, float], *, bottom_m: float, spec: BoardSpec, lean_deg: float = 10.0
) -> np.ndarray:
    """``world_from_board`` of a board standing upright, facing +z, leaning back by ``lean_deg``."""
    width_m, height_m = spec.size_m
    lean = math.radians(lean_deg)
    up_along_board = np.array([0.0, math.cos(lean), -math.sin(lean)])  # bottom -> top edge
    x = np.array([1.0, 0.0, 0.0])
    y = -up_along_board  # board y runs down the page
    z = np.cross(x, y)  # into the board: away from a viewer in front (+z side)
    bottom_left = np.array([bottom_centre_xz[0] - width_m / 2, bottom_m, bottom_centre_xz[1]])
    m = np.eye(4)
    m[:3, :3] = np.stack([x, y, z], axis=1)
    m[:3, 3] = bottom_left + height_m * up_along_board
    return m


@dataclass
class Scene:
    """A floor, optionally a board (``world_from_board``) and a person; rendered by ray casting."""

    spec: BoardSpec | None = None
    world_from_board: np.ndarray | None = None
    person_xz: tuple[float, float] | None = None
    person_yaw_deg: float = 0.0
    #: Boxes standing on the floor: (centre x, centre z, width, height, depth, yaw in degrees).
    boxes: tuple[tuple[float, float, float, float, float, float], ...] = ()
    _colors: list[tuple[int, int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rc = o3d.t.geometry.RaycastingScene()
        floor = o3d.geometry.TriangleMesh()
        floor.vertices = o3d.utility.Vector3dVector([[-20, 0, -20], [20, 0, -20], [20, 0, 20], [-20, 0, 20]])
        floor.triangles = o3d.utility.Vector3iVector([[0, 2, 1], [0, 3, 2]])
        self._add(floor, (0, 0, 0))  # id 0: floor (textured)
        self.board_id = -1
        if self.spec is not None and self.world_from_board is not None:
            w, h = self.spec.size_m
            m = PAPER_MARGIN_M
            corners = np.array([[-m, -m, 0], [w + m, -m, 0], [w + m, h + m, 0], [-m, h + m, 0]])
            quad = o3d.geometry.TriangleMesh()
            world = corners @ self.world_from_board[:3, :3].T + self.world_from_board[:3, 3]
            quad.vertices = o3d.utility.Vector3dVector(world)
            quad.triangles = o3d.utility.Vector3iVector([[0, 1, 2], [0, 2, 3]])
            self.board_id = self._add(quad, (0, 0, 0))
            sq = _TEXELS_PER_SQUARE
            self.texture = (
                self.spec.cv_board()
                .generateImage(
                    (self.spec.squares_x * sq, self.spec.squares_y * sq), marginSize=0, borderBits=1
                )
                .astype(np.float32)
            )
            self.texels_per_m = sq / self.spec.square_length_m
        for i, (bx, bz, bw, bh, bd, yaw) in enumerate(self.boxes):
            box = o3d.geometry.TriangleMesh.create_box(bw, bh, bd)
            box.translate((-bw / 2, 0.0, -bd / 2))
            box.rotate(
                o3d.geometry.get_rotation_matrix_from_axis_angle([0, math.radians(yaw), 0]), center=(0, 0, 0)
            )
            box.translate((bx, 0.0, bz))
            self._add(box, ((170, 120, 60), (90, 140, 90), (150, 90, 120))[i % 3])
        if self.person_xz is not None:
            for mesh, color in body_parts(self.person_xz, self.person_yaw_deg):
                self._add(mesh, color)

    def _add(self, mesh: o3d.geometry.TriangleMesh, color: tuple[int, int, int]) -> int:
        gid = int(self.rc.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh)))
        self._colors.append(color)
        return gid

    def _cast(self, cam: VirtualCamera, u: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
        k = cam.intrinsics
        d_cam = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones_like(u)], axis=-1)
        z_per_t = 1.0 / np.linalg.norm(d_cam, axis=-1)
        d_world = (d_cam * z_per_t[..., None]) @ cam.world_from_camera[:3, :3].T
        origin = np.broadcast_to(cam.world_from_camera[:3, 3], d_world.shape)
        rays = np.concatenate([origin, d_world], axis=-1).astype(np.float32)
        hit = self.rc.cast_rays(o3d.core.Tensor.from_numpy(np.ascontiguousarray(rays)))
        return {
            "t": hit["t_hit"].numpy().astype(np.float64),
            "gid": hit["geometry_ids"].numpy().astype(np.int64),
            "normal": hit["primitive_normals"].numpy().astype(np.float64),
            "dir": d_world,
            "origin": np.asarray(cam.world_from_camera[:3, 3]),
            "z_per_t": z_per_t,
        }

    def _shade(self, hit: dict[str, np.ndarray]) -> np.ndarray:
        t, gid, d = hit["t"], hit["gid"], hit["dir"]
        ok = np.isfinite(t)
        p = hit["origin"] + d * np.where(ok, t, 0.0)[..., None]
        rgb = np.zeros((*t.shape, 3))
        palette = np.array(self._colors, np.float64)
        lam = 0.45 + 0.55 * np.abs(np.einsum("...i,...i->...", hit["normal"], d))
        body = ok & (gid > max(0, self.board_id))
        rgb[body] = palette[gid[body]] * lam[body, None]
        floor = ok & (gid == 0)
        checker = ((np.floor(p[..., 0] / 0.25) + np.floor(p[..., 2] / 0.25)) % 2) == 0
        tone = np.where(checker, 150.0, 105.0) + 15.0 * np.sin(p[..., 0] * 37.0) * np.cos(p[..., 2] * 23.0)
        rgb[floor] = tone[floor, None] * np.array([1.0, 0.95, 0.9])
        if self.board_id >= 0 and self.world_from_board is not None:
            on = ok & (gid == self.board_id)
            board_from_world = np.linalg.inv(self.world_from_board)
            q = p[on] @ board_from_world[:3, :3].T + board_from_world[:3, 3]
            front = (d[on] @ self.world_from_board[:3, 2]) > 0
            tx = (q[:, 0] * self.texels_per_m - 0.5).astype(np.float32)
            ty = (q[:, 1] * self.texels_per_m - 0.5).astype(np.float32)
            sampled = _bilinear(self.texture, tx, ty, outside=255.0)
            grey = np.where(front, 25.0 + sampled * (220.0 / 255.0), 200.0) * (0.85 + 0.15 * lam[on])
            rgb[on] = grey[:, None]
        return rgb

    def render(
        self, cam: VirtualCamera, *, seed: int = 0, sequence: int = 0, noise: bool = True
    ) -> RGBDFrame:
        k = cam.intrinsics
        h, w = k.shape
        uc, vc = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        hit = self._cast(cam, uc.reshape(-1), vc.reshape(-1))
        color = self._shade(hit).reshape(h, w, 3)
        z = (hit["t"] * hit["z_per_t"]).reshape(h, w)
        z[~np.isfinite(z)] = 0.0
        if self.board_id >= 0:  # anti-alias the board: 3 x 3 rays per pixel on and around it
            near = cv2.dilate(
                (hit["gid"] == self.board_id).reshape(h, w).astype(np.uint8), np.ones((5, 5), np.uint8)
            )
            vs, us = np.nonzero(near)
            ss = 3
            offsets = (np.arange(ss) + 0.5) / ss - 0.5
            du, dv = (a.reshape(-1) for a in np.meshgrid(offsets, offsets))
            sub = self._cast(cam, (us[:, None] + du).reshape(-1), (vs[:, None] + dv).reshape(-1))
            color[vs, us] = self._shade(sub).reshape(len(us), ss * ss, 3).mean(axis=1)
        rng = np.random.default_rng(seed)
        if noise:
            z = z + rng.normal(size=z.shape) * DEPTH_NOISE_PER_M2 * z * z
            z[rng.random(z.shape) < 0.002] = 0.0
            color = color + rng.normal(0.0, 2.0, color.shape)
        z[(z <= 0) | (z > 8.0)] = 0.0
        depth_mm = np.round(z * 1000.0).astype(np.uint16)
        return RGBDFrame(
            depth_m=depth_from_units(depth_mm, 0.001),
            color=np.clip(np.round(color), 0, 255).astype(np.uint8),
            intrinsics=k,
            capture_time_ns=1_700_000_000_000_000_000 + sequence * 33_333_333,
            sequence=sequence,
            serial=cam.serial,
        )


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray, *, outside: float) -> np.ndarray:
    """Bilinear samples of a grey image at (x, y) texel coordinates; ``outside`` beyond its edge."""
    h, w = image.shape
    padded = np.pad(image, 1, constant_values=outside)
    xf, yf = np.clip(x + 1.0, 0.0, w + 0.999), np.clip(y + 1.0, 0.0, h + 0.999)
    x0, y0 = np.floor(xf).astype(np.int64), np.floor(yf).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w + 1), np.minimum(y0 + 1, h + 1)
    ax, ay = xf - x0, yf - y0
    top = padded[y0, x0] * (1 - ax) + padded[y0, x1] * ax
    bottom = padded[y1, x0] * (1 - ax) + padded[y1, x1] * ax
    return top * (1 - ay) + bottom * ay


def write_rgbd_folder(folder: Path, frames: list[RGBDFrame]) -> Path:
    """Write frames as an ``rgbd:`` folder (the folder's name is the camera serial)."""
    folder.mkdir(parents=True, exist_ok=True)
    k = frames[0].intrinsics
    (folder / "intrinsics.json").write_text(
        json.dumps({"fx": k.fx, "fy": k.fy, "cx": k.cx, "cy": k.cy, "depth_unit_m": 0.001})
    )
    for i, frame in enumerate(frames):
        assert frame.color is not None
        cv2.imwrite(str(folder / f"f{i:03d}_color.png"), cv2.cvtColor(frame.color, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(folder / f"f{i:03d}_depth_mm.png"), np.round(frame.depth_m * 1000).astype(np.uint16))
    return folder
