"""The built-in synthetic performer: a human-sized, coloured, moving figure seen by a virtual RGB-D camera.

It needs no camera and is deterministic for a seed: frame ``i`` of seed ``s`` is always the same
image. The figure (head, torso, pelvis, arms, legs and feet made of ellipsoids and capsules, about
1.6–1.9 m tall) stands on a floor in front of a back wall, turns slowly, walks in place and waves
its right arm. The virtual camera sits 1.3 m above the floor, pitched 6° down, 2.5 m from the
performer, with Kinect-like intrinsics and depth (quantised disparity: steps and noise growing with
distance squared, then millimetres) — so the whole capture pipeline (floor and wall removal included) runs on it as on a
real camera. Frames carry the true person mask and skeleton, which tests use as ground truth.

Rendering is analytic ray casting in numpy: each primitive is intersected only with the rays of
its screen-space bounding box, so a 640x480 frame costs a few milliseconds.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from holo.errors import ConfigError
from holo.frame import POSE_JOINT_NAMES, Intrinsics, RGBDFrame, Skeleton, depth_from_units
from holo.sources.base import FrameSource, SourceOptions

__all__ = ["SyntheticSource", "open_synthetic", "render_performer"]

logger = logging.getLogger(__name__)

CAMERA_HEIGHT_M = 1.3
CAMERA_PITCH_DEG = 6.0
PERFORMER_DISTANCE_M = 2.5
WALL_DISTANCE_M = 4.6
# focal length (px) x baseline (m) x disparity sub-steps per pixel of a Kinect v1
_DISPARITY_M = 525.0 * 0.075 * 8


def _rot_y(angle_rad: float) -> np.ndarray:
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_x(angle_rad: float) -> np.ndarray:
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def camera_pose() -> np.ndarray:
    """``world_from_camera`` of the virtual camera (world: y up, floor y = 0; camera: OpenCV axes)."""
    # OpenCV camera axes in a y-up world looking along +z: x_cam = -x_world, y_cam = -y_world.
    flip = np.diag([-1.0, -1.0, 1.0])
    pitch = _rot_x(math.radians(CAMERA_PITCH_DEG))  # look down: rotate forward (+z) towards -y
    m = np.eye(4)
    m[:3, :3] = pitch @ flip
    m[:3, 3] = (0.0, CAMERA_HEIGHT_M, 0.0)
    return m


@dataclass(frozen=True, slots=True)
class Look:
    """What a seed chooses: size, place and clothes of the performer."""

    height_m: float
    offset_x_m: float
    phase: float
    shirt: tuple[int, int, int]
    trousers: tuple[int, int, int]
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]

    @classmethod
    def from_seed(cls, seed: int) -> Look:
        rng = np.random.default_rng(seed)
        hue = rng.uniform(0, 1)
        shirt = _hsv_to_rgb(hue, 0.65, 0.85)
        trousers = _hsv_to_rgb(rng.uniform(0.55, 0.7), 0.5, rng.uniform(0.25, 0.45))
        skins = [(236, 188, 160), (198, 134, 96), (141, 85, 54), (224, 172, 105)]
        hairs = [(40, 28, 20), (90, 60, 30), (200, 170, 100), (20, 20, 20)]
        return cls(
            height_m=float(rng.uniform(1.62, 1.88)),
            offset_x_m=float(rng.uniform(-0.25, 0.25)),
            phase=float(rng.uniform(0, 2 * math.pi)),
            shirt=shirt,
            trousers=trousers,
            skin=skins[int(rng.integers(len(skins)))],
            hair=hairs[int(rng.integers(len(hairs)))],
        )


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return (round(r * 255), round(g * 255), round(b * 255))


@dataclass(frozen=True, slots=True)
class _Capsule:
    a: np.ndarray
    b: np.ndarray
    radius: float
    color: tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class _Ellipsoid:
    center: np.ndarray
    radii: np.ndarray
    rotation: np.ndarray  # world_from_local
    color: tuple[int, int, int]
    hair: tuple[int, int, int] | None = None  # colour of the top/back (head)
    stripes: bool = False


def pose_joints(look: Look, t_s: float) -> dict[str, np.ndarray]:
    """The performer's joints in the world at time ``t_s`` (a small kinematic model)."""
    s = look.height_m / 1.75
    w = 2 * math.pi * 0.6  # walking in place at 0.6 Hz
    ph = look.phase
    yaw = 0.45 * math.sin(0.35 * t_s + ph)  # slowly turning left and right
    root = np.array([look.offset_x_m + 0.08 * math.sin(0.2 * t_s + ph), 0.0, PERFORMER_DISTANCE_M])
    # Local frame: the performer faces -z (the camera); its right is +x.
    j: dict[str, np.ndarray] = {}
    j["pelvis"] = np.array([0.0, 0.95 * s, 0.0])
    j["chest"] = np.array([0.0, 1.3 * s, 0.0])
    j["neck"] = np.array([0.0, 1.49 * s, 0.0])
    j["head"] = np.array([0.0, 1.62 * s, -0.01 * s])
    for side, sx in (("right", 1.0), ("left", -1.0)):
        leg = 0.28 * math.sin(w * t_s + ph + (0 if side == "right" else math.pi))
        knee_bend = 0.35 * max(0.0, math.sin(w * t_s + ph + (0 if side == "right" else math.pi)))
        hip = np.array([0.09 * s * sx, 0.92 * s, 0.0])
        thigh = 0.43 * s
        shin = 0.42 * s
        knee = hip + thigh * np.array([0.0, -math.cos(leg), -math.sin(leg)])
        ankle = knee + shin * np.array([0.0, -math.cos(leg - knee_bend), -math.sin(leg - knee_bend)])
        ankle[1] = max(ankle[1], 0.07 * s)
        j[f"{side}_hip"], j[f"{side}_knee"], j[f"{side}_ankle"] = hip, knee, ankle
        j[f"{side}_heel"] = ankle + np.array([0.0, -0.05 * s, 0.04 * s])
        j[f"{side}_toe"] = ankle + np.array([0.0, -0.06 * s, -0.16 * s])
        shoulder = np.array([0.2 * s * sx, 1.43 * s, 0.0])
        j[f"{side}_shoulder"] = shoulder
        if side == "right":  # waving: upper arm raised sideways, forearm swinging
            lift = 1.9 + 0.15 * math.sin(0.5 * t_s)
            elbow = shoulder + 0.29 * s * np.array([math.sin(lift), -math.cos(lift), -0.15])
            wave = 0.5 * math.sin(2 * math.pi * 1.2 * t_s + ph)
            wrist = elbow + 0.26 * s * np.array([math.sin(wave) * 0.9, math.cos(wave), -0.2])
        else:  # hanging, swinging against the legs
            swing = 0.25 * math.sin(w * t_s + ph)
            elbow = shoulder + 0.29 * s * np.array([-0.12, -math.cos(swing), -math.sin(swing)])
            wrist = elbow + 0.26 * s * np.array([-0.05, -math.cos(swing + 0.3), -math.sin(swing + 0.3)])
        j[f"{side}_elbow"], j[f"{side}_wrist"] = elbow, wrist
        j[f"{side}_hand"] = wrist + (wrist - elbow) / np.linalg.norm(wrist - elbow) * 0.08 * s
    r = _rot_y(yaw)
    return {name: r @ p + root for name, p in j.items()} | {"_yaw": np.array([yaw, 0.0, 0.0])}


def _primitives(look: Look, j: dict[str, np.ndarray]) -> list[_Capsule | _Ellipsoid]:
    s = look.height_m / 1.75
    rot = _rot_y(float(j["_yaw"][0]))
    shoe = (35, 35, 40)
    prims: list[_Capsule | _Ellipsoid] = [
        _Ellipsoid(
            j["chest"] - rot @ np.array([0, 0.03 * s, 0]),
            np.array([0.17, 0.25, 0.11]) * s,
            rot,
            look.shirt,
            stripes=True,
        ),
        _Ellipsoid(j["pelvis"], np.array([0.165, 0.13, 0.115]) * s, rot, look.trousers),
        _Ellipsoid(j["head"], np.array([0.085, 0.115, 0.1]) * s, rot, look.skin, hair=look.hair),
        _Capsule(
            j["neck"] - np.array([0, 0.04 * s, 0]),
            j["head"] - np.array([0, 0.06 * s, 0]),
            0.05 * s,
            look.skin,
        ),
        _Capsule(j["left_shoulder"], j["right_shoulder"], 0.065 * s, look.shirt),  # shoulder girdle
    ]
    for side in ("right", "left"):
        prims += [
            _Capsule(j[f"{side}_shoulder"], j[f"{side}_elbow"], 0.052 * s, look.shirt),
            _Capsule(j[f"{side}_elbow"], j[f"{side}_wrist"], 0.042 * s, look.skin),
            _Capsule(j[f"{side}_wrist"], j[f"{side}_hand"], 0.045 * s, look.skin),
            _Capsule(j[f"{side}_hip"], j[f"{side}_knee"], 0.078 * s, look.trousers),
            _Capsule(j[f"{side}_knee"], j[f"{side}_ankle"], 0.058 * s, look.trousers),
            _Capsule(
                j[f"{side}_heel"] + np.array([0, 0.02 * s, 0]),
                j[f"{side}_toe"] + np.array([0, 0.02 * s, 0]),
                0.045 * s,
                shoe,
            ),
        ]
    return prims


def _mediapipe_skeleton(j: dict[str, np.ndarray], look: Look) -> tuple[np.ndarray, np.ndarray]:
    """The 33 MediaPipe Pose joints (world) approximated from the kinematic joints."""
    s = look.height_m / 1.75
    rot = _rot_y(float(j["_yaw"][0]))
    head = j["head"]

    def face(x: float, y: float, z: float) -> np.ndarray:
        return head + rot @ (np.array([x, y, z]) * s)

    pts = {
        "nose": face(0, -0.01, -0.1),
        "left_eye_inner": face(-0.015, 0.02, -0.085),
        "left_eye": face(-0.03, 0.02, -0.08),
        "left_eye_outer": face(-0.045, 0.02, -0.075),
        "right_eye_inner": face(0.015, 0.02, -0.085),
        "right_eye": face(0.03, 0.02, -0.08),
        "right_eye_outer": face(0.045, 0.02, -0.075),
        "left_ear": face(-0.085, 0.0, 0.0),
        "right_ear": face(0.085, 0.0, 0.0),
        "mouth_left": face(-0.025, -0.05, -0.085),
        "mouth_right": face(0.025, -0.05, -0.085),
    }
    for side in ("left", "right"):
        hand = j[f"{side}_hand"]
        pts |= {
            f"{side}_shoulder": j[f"{side}_shoulder"],
            f"{side}_elbow": j[f"{side}_elbow"],
            f"{side}_wrist": j[f"{side}_wrist"],
            f"{side}_pinky": hand,
            f"{side}_index": hand,
            f"{side}_thumb": (hand + j[f"{side}_wrist"]) / 2,
            f"{side}_hip": j[f"{side}_hip"],
            f"{side}_knee": j[f"{side}_knee"],
            f"{side}_ankle": j[f"{side}_ankle"],
            f"{side}_heel": j[f"{side}_heel"],
            f"{side}_foot_index": j[f"{side}_toe"],
        }
    joints = np.array([pts[name] for name in POSE_JOINT_NAMES], dtype=np.float64)
    return joints, np.ones(len(POSE_JOINT_NAMES))


class _Raster:
    """Per-frame z-buffer over camera rays expressed in the world."""

    def __init__(self, intrinsics: Intrinsics, world_from_camera: np.ndarray) -> None:
        h, w = intrinsics.shape
        u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        d_cam = np.stack(
            [(u - intrinsics.cx) / intrinsics.fx, (v - intrinsics.cy) / intrinsics.fy, np.ones_like(u)], -1
        )
        self.z_per_t = 1.0 / np.linalg.norm(d_cam, axis=-1)  # camera z of a unit step along the ray
        d_cam = d_cam * self.z_per_t[..., None]
        self.rays = d_cam @ world_from_camera[:3, :3].T  # unit directions in the world, (h, w, 3)
        self.origin = world_from_camera[:3, 3].copy()
        self.world_from_camera = world_from_camera
        self.camera_from_world = np.linalg.inv(world_from_camera)
        self.intrinsics = intrinsics
        self.t = np.full((h, w), np.inf)
        self.color = np.zeros((h, w, 3), np.float64)
        self.body = np.zeros((h, w), bool)
        _draw_room(self)
        self.room_t, self.room_color = self.t.copy(), self.color.copy()
        # Noise fields made once and shifted per frame: cheap, and still different every frame.
        rng = np.random.default_rng(12345)
        self.depth_noise = rng.standard_normal((h, w)).astype(np.float32)
        self.dropout = rng.random((h, w)) < 0.002
        self.color_noise = rng.normal(0.0, 2.0, (h, w, 3)).astype(np.float32)

    def reset(self) -> None:
        """Start a frame from the empty room."""
        self.t[:] = self.room_t
        self.color[:] = self.room_color
        self.body.fill(False)

    def bbox(self, center: np.ndarray, radius: float) -> tuple[slice, slice] | None:
        """Pixel rectangle covering a world-space sphere (conservative)."""
        c = self.camera_from_world[:3, :3] @ center + self.camera_from_world[:3, 3]
        if c[2] - radius <= 0.05:
            return None
        k = self.intrinsics
        zmin = c[2] - radius
        u0 = k.fx * (c[0] - radius) / (zmin if c[0] - radius < 0 else c[2] + radius) + k.cx
        u1 = k.fx * (c[0] + radius) / (zmin if c[0] + radius > 0 else c[2] + radius) + k.cx
        v0 = k.fy * (c[1] - radius) / (zmin if c[1] - radius < 0 else c[2] + radius) + k.cy
        v1 = k.fy * (c[1] + radius) / (zmin if c[1] + radius > 0 else c[2] + radius) + k.cy
        x0, x1 = max(0, int(u0) - 1), min(k.width, int(u1) + 2)
        y0, y1 = max(0, int(v0) - 1), min(k.height, int(v1) + 2)
        if x0 >= x1 or y0 >= y1:
            return None
        return slice(y0, y1), slice(x0, x1)

    def write(self, win: tuple[slice, slice], t: np.ndarray, rgb: np.ndarray, body: bool) -> None:
        cur = self.t[win]
        closer = t < cur
        cur[closer] = t[closer]
        self.color[win][closer] = rgb[closer]
        self.body[win][closer] = body


def _shade(normal: np.ndarray, rays: np.ndarray) -> np.ndarray:
    lam = np.abs(np.einsum("...i,...i->...", normal, rays))
    return 0.35 + 0.65 * lam


def _draw_capsule(r: _Raster, cap: _Capsule) -> None:
    # The capsule's image lies in the union of its two end spheres' boxes.
    boxes = [box for box in (r.bbox(cap.a, cap.radius), r.bbox(cap.b, cap.radius)) if box is not None]
    if not boxes:
        return
    win = (
        slice(min(b[0].start for b in boxes), max(b[0].stop for b in boxes)),
        slice(min(b[1].start for b in boxes), max(b[1].stop for b in boxes)),
    )
    rd = r.rays[win]
    ro = r.origin
    ba = cap.b - cap.a
    oa = ro - cap.a
    baba = ba @ ba
    bard = rd @ ba
    baoa = ba @ oa
    rdoa = rd @ oa
    oaoa = oa @ oa
    a = baba - bard * bard
    b = baba * rdoa - baoa * bard
    c = baba * oaoa - baoa * baoa - cap.radius**2 * baba
    h = b * b - a * c
    t = np.full(rd.shape[:2], np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_body = (-b - np.sqrt(h)) / a
        y = baoa + t_body * bard
        side = (h >= 0) & (y > 0) & (y < baba)
        t[side] = t_body[side]
        # End caps (spheres at a or b).
        for end in (cap.a, cap.b):
            oc = ro - end
            bb = rd @ oc
            cc = oc @ oc - cap.radius**2
            hh = bb * bb - cc
            tc = -bb - np.sqrt(hh)
            ok = (hh >= 0) & (tc > 0) & (tc < t)
            t[ok] = tc[ok]
    hit = np.isfinite(t)
    if not hit.any():
        return
    t[~hit] = np.inf
    p = ro + rd * np.where(hit, t, 0.0)[..., None]
    along = np.clip(((p - cap.a) @ ba) / baba, 0, 1)
    normal = p - (cap.a + along[..., None] * ba)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-12
    rgb = np.array(cap.color, np.float64) * _shade(normal, rd)[..., None]
    r.write(win, t, rgb, True)


def _draw_ellipsoid(r: _Raster, e: _Ellipsoid) -> None:
    win = r.bbox(e.center, float(e.radii.max()))
    if win is None:
        return
    rd = r.rays[win]
    local_from_world = e.rotation.T
    o = (local_from_world @ (r.origin - e.center)) / e.radii
    d = (rd @ local_from_world.T) / e.radii
    a = np.einsum("...i,...i->...", d, d)
    b = d @ o
    c = o @ o - 1.0
    h = b * b - a * c
    t = np.full(rd.shape[:2], np.inf)
    with np.errstate(invalid="ignore"):
        tt = (-b - np.sqrt(h)) / a
    ok = (h >= 0) & (tt > 0)
    t[ok] = tt[ok]
    if not ok.any():
        return
    q = o + d * np.where(ok, t, 0.0)[..., None]  # unit-sphere point (junk where missed)
    normal = (q / e.radii) @ local_from_world
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-12
    base = np.broadcast_to(np.array(e.color, np.float64), q.shape).copy()
    if e.stripes:
        band = (np.floor((q[..., 1] + 1.0) * 5.0) % 2) == 1
        base[band] *= 0.55
    if e.hair is not None:
        hair = (q[..., 1] > 0.35) | (q[..., 2] > 0.25)
        base[hair] = e.hair
    rgb = base * _shade(normal, rd)[..., None]
    r.write(win, t, rgb, True)


def _draw_room(r: _Raster) -> None:
    rd = r.rays
    ro = r.origin
    h, w = rd.shape[:2]
    t = np.full((h, w), np.inf)
    color = np.zeros((h, w, 3))
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = -ro[1] / rd[..., 1]
        t_wall = (WALL_DISTANCE_M - ro[2]) / rd[..., 2]
    floor = (t_floor > 0) & np.isfinite(t_floor)
    t[floor] = t_floor[floor]
    p = ro + rd * np.where(floor, t_floor, 0)[..., None]
    checker = ((np.floor(p[..., 0] / 0.5) + np.floor(p[..., 2] / 0.5)) % 2) == 0
    color[floor] = np.where(checker[floor, None], (150, 140, 130), (110, 100, 95))
    wall = (t_wall > 0) & (t_wall < t)
    t[wall] = t_wall[wall]
    pw = ro + rd * np.where(wall, t_wall, 0)[..., None]
    shade = 0.8 + 0.2 * np.clip(pw[..., 1] / 3.0, 0, 1)
    color[wall] = np.array([215.0, 205.0, 180.0]) * shade[wall, None]
    r.t[:] = t
    r.color[:] = color
    r.body[:] = False


def render_performer(
    raster: _Raster, look: Look, t_s: float, rng: np.random.Generator, *, noise: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Render one frame: (depth_m float32, rgb uint8, true person mask, true joints in camera frame)."""
    raster.reset()
    joints = pose_joints(look, t_s)
    for prim in _primitives(look, joints):
        if isinstance(prim, _Capsule):
            _draw_capsule(raster, prim)
        else:
            _draw_ellipsoid(raster, prim)
    depth = (raster.t * raster.z_per_t).astype(np.float32)
    depth[~np.isfinite(depth)] = 0
    rgb = raster.color.astype(np.float32)
    if noise:
        # Kinect v1-like: depth from a disparity measured in 1/8-pixel steps over a 7.5 cm baseline,
        # with noise of half a step — so depth comes in steps growing with distance squared (1.5 cm
        # at 2.5 m) and jitters between neighbouring steps; a few dropouts.
        shift = (int(rng.integers(depth.shape[0])), int(rng.integers(depth.shape[1])))
        with np.errstate(divide="ignore"):
            disparity = np.float32(_DISPARITY_M) / depth
        disparity = np.round(disparity + 0.5 * np.roll(raster.depth_noise, shift, axis=(0, 1)))
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = np.where(disparity > 0, np.float32(_DISPARITY_M) / disparity, np.float32(0)).astype(
                np.float32
            )
        depth[np.roll(raster.dropout, shift, axis=(0, 1))] = 0
        rgb += np.roll(raster.color_noise, shift[::-1], axis=(0, 1))
    depth = depth_from_units(np.round(depth * 1000.0), 0.001)
    depth[depth > 8.0] = 0
    rgb8 = np.clip(rgb, 0, 255).astype(np.uint8)
    world_joints, _ = _mediapipe_skeleton(joints, look)
    camera_from_world = np.linalg.inv(raster.world_from_camera)
    joints_cam = world_joints @ camera_from_world[:3, :3].T + camera_from_world[:3, 3]
    return depth, rgb8, raster.body.copy(), joints_cam.astype(np.float32)


class SyntheticSource(FrameSource):
    """An endless (or ``count``-bounded by the caller) stream of the performer at ``options.fps``."""

    kind = "synthetic"

    def __init__(self, spec: str, options: SourceOptions, seed: int) -> None:
        super().__init__(spec, options)
        self.seed = seed
        self.look = Look.from_seed(seed)
        width, height = options.size
        self.intrinsics = options.intrinsics_for(width, height, "synthetic source") or Intrinsics(
            width=width,
            height=height,
            fx=525.0 * width / 640,
            fy=525.0 * width / 640,
            cx=(width - 1) / 2,
            cy=(height - 1) / 2,
        )
        self.world_from_camera = camera_pose()

    @property
    def serial(self) -> str:
        return f"synthetic-{self.seed}"

    def _frames(self) -> Iterator[RGBDFrame]:
        raster = _Raster(self.intrinsics, self.world_from_camera)
        fps = self.options.fps if self.options.fps > 0 else 30.0
        start = time.monotonic()
        i = 0
        while True:
            if self.options.realtime:
                delay = start + i / fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            rng = np.random.default_rng((self.seed, i))
            depth, rgb, mask, joints = render_performer(raster, self.look, i / fps, rng)
            yield RGBDFrame(
                depth_m=depth,
                color=rgb,
                intrinsics=self.intrinsics,
                capture_time_ns=time.time_ns(),
                sequence=i,
                serial=self.serial,
                depth_unit_m=0.001,
                truth_mask=mask,
                truth_skeleton=Skeleton(joints_m=joints, visibility=np.ones(len(joints), np.float32)),
            )
            i += 1


def open_synthetic(arg: str | None, spec: str, options: SourceOptions) -> SyntheticSource:
    seed = options.seed
    if arg:
        try:
            seed = int(arg)
        except ValueError:
            raise ConfigError(
                f"--source {spec!r}: the synthetic performer's seed must be an integer, got {arg!r}"
            ) from None
    return SyntheticSource(spec, options, seed)
