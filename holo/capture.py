"""The capture pipeline: an RGB-D frame in, the person's coloured point cloud out.

``frame -> person mask (segmenter) -> back-projection of the masked pixels -> PersonCloud``.

The cloud stays in the camera frame and keeps each point's pixel, so a codec can code it as a
range image; ``world_from_camera`` places it in the world — from calibration when given, else from
the floor the segmenter found (floor at y = 0, +y up, the camera looking along -z, the world's
origin on the floor below the camera), so even a single uncalibrated camera stands the person on
the floor, upright.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from holo.errors import ConfigError, MissingDependencyError
from holo.frame import PersonCloud, RGBDFrame
from holo.geometry import Plane, backproject
from holo.segment import DepthPersonSegmenter, PersonSegmenter, SegmenterConfig

__all__ = ["DEPTH_ONLY_GREY", "CaptureConfig", "CapturePipeline", "world_from_floor"]

logger = logging.getLogger(__name__)

#: Colour given to points of depth-only cameras.
DEPTH_ONLY_GREY = (170, 170, 170)


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    participant: str = "me"
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    #: Keep at most this many points (an even pixel subsample); None keeps all.
    max_points: int | None = None
    #: Place clouds in the world using the floor when no calibration gives ``world_from_camera``.
    floor_to_world: bool = True
    #: Body tracking (MediaPipe): "on", "off", or "auto" (on when mediapipe imports). The library
    #: default is off (deterministic, depth only); the command line's is auto.
    body: str = "off"
    #: Run MediaPipe Pose every N frames (segmentation runs every frame).
    pose_every: int = 3

    def __post_init__(self) -> None:
        if self.max_points is not None and self.max_points < 1:
            raise ConfigError(f"max points must be at least 1, got {self.max_points}")
        if not self.participant or len(self.participant.encode()) > 64 or "/" in self.participant:
            raise ConfigError(f"participant name must be 1–64 bytes without '/', got {self.participant!r}")
        if self.body not in ("auto", "on", "off"):
            raise ConfigError(f"body tracking must be auto, on or off, got {self.body!r}")
        if self.pose_every < 1:
            raise ConfigError("pose must run at least every frame (pose_every >= 1)")


def world_from_floor(floor: Plane) -> np.ndarray:
    """``world_from_camera`` for a camera above ``floor`` (a plane in camera coordinates, normal up)."""
    up = floor.normal / np.linalg.norm(floor.normal)
    x = np.array([1.0, 0.0, 0.0]) - up[0] * up  # the camera's right, laid flat on the floor
    x /= np.linalg.norm(x)
    z = np.cross(x, up)
    m = np.eye(4)
    m[:3, :3] = np.stack([x, up, z])
    m[:3, 3] = (0.0, floor.offset, 0.0)
    return m


def _even_subset(shape: tuple[int, int], fraction: float) -> np.ndarray:
    """A regular pattern of whole rows (and, below one half, columns) keeping ``fraction`` of pixels.

    Whole rows and columns keep the cloud a range image whose kept neighbours stay neighbours,
    which the codec exploits (it removes empty rows and columns before coding).
    """
    if fraction >= 0.5:
        fr, fc = fraction, 1.0
    else:
        fr = fc = float(np.sqrt(fraction))

    def keep(n: int, f: float) -> np.ndarray:
        i = np.arange(n)
        return np.floor((i + 1) * f) > np.floor(i * f)

    return keep(shape[0], fr)[:, None] & keep(shape[1], fc)[None, :]


class CapturePipeline:
    """Turns frames into person clouds. Keeps per-camera state (tracked floor, main person)."""

    def __init__(
        self,
        config: CaptureConfig | None = None,
        *,
        segmenter: PersonSegmenter | None = None,
        world_from_camera: np.ndarray | None = None,
    ) -> None:
        self.config = config or CaptureConfig()
        self.world_from_camera = world_from_camera
        self.last_segment_ms = 0.0
        available = False
        if self.config.body != "off":  # "off" never imports mediapipe
            from holo.body import mediapipe_available

            available = mediapipe_available()
        if self.config.body == "on" and not available:
            raise MissingDependencyError(
                "body tracking needs mediapipe 0.10.21 (pip install mediapipe==0.10.21)"
            )
        self.body = available
        self._segmenter = segmenter
        self._tracker: object = None  # the relief path's BodyTracker, made on first use

    @property
    def segmenter(self) -> PersonSegmenter:
        """Made on first use: MediaPipe takes a moment to start."""
        if self._segmenter is None:
            if self.body:
                from holo.bodyseg import BodySegmenter

                self._segmenter = BodySegmenter(self.config.segmenter, pose_every=self.config.pose_every)
            else:
                self._segmenter = DepthPersonSegmenter(self.config.segmenter)
        return self._segmenter

    def close(self) -> None:
        for part in (self._segmenter, self._tracker):
            closer = getattr(part, "close", None)
            if closer is not None:
                closer()

    def process(self, frame: RGBDFrame) -> PersonCloud:
        if not frame.has_depth:
            return self._process_relief(frame)
        t0 = time.perf_counter()
        seg = self.segmenter.segment(frame)
        self.last_segment_ms = (time.perf_counter() - t0) * 1000
        mask = seg.mask
        if self.config.max_points is not None:
            count = int(np.count_nonzero(mask))
            if count > self.config.max_points:
                fraction = self.config.max_points / count
                for _ in range(4):  # the pattern keeps about `fraction`; shave until within budget
                    subset = mask & _even_subset((mask.shape[0], mask.shape[1]), fraction)
                    kept = int(np.count_nonzero(subset))
                    if kept <= self.config.max_points:
                        break
                    fraction *= self.config.max_points / kept * 0.995
                mask = subset
        points, pixels, flat = backproject(frame.depth_m, frame.intrinsics, mask)
        if frame.color is not None:
            # Gather 3-byte pixels as single items: ~4x faster than fancy-indexing rows.
            rgb = np.ascontiguousarray(frame.color).reshape(-1, 3).view(np.dtype((np.void, 3))).reshape(-1)
            colors = np.take(rgb, flat).view(np.uint8).reshape(-1, 3)
        else:
            colors = np.empty((len(points), 3), np.uint8)
            colors[:] = DEPTH_ONLY_GREY
        world_from_camera = self.world_from_camera
        if world_from_camera is None and self.config.floor_to_world and seg.floor is not None:
            world_from_camera = world_from_floor(seg.floor)
        skeleton = seg.skeleton
        return PersonCloud(
            points_m=points,
            colors=np.ascontiguousarray(colors),
            capture_time_ns=frame.capture_time_ns,
            sequence=frame.sequence,
            participant=self.config.participant,
            frame="camera",
            intrinsics=frame.intrinsics,
            pixels=pixels,
            depth_unit_m=frame.depth_unit_m,
            world_from_camera=world_from_camera,
            skeleton=skeleton,
            serial=frame.serial,
            status=seg.status,
        )

    # -- colour-only cameras ---------------------------------------------------------------------------
    def _process_relief(self, frame: RGBDFrame) -> PersonCloud:
        """A webcam's or video's frame: the person's relief from segmentation and pose (holo.relief)."""
        import cv2

        from holo.body import TORSO, BodyTracker
        from holo.frame import Skeleton, depth_from_units
        from holo.relief import estimate_distance_m, relief_depth

        if frame.color is None:
            return self._empty(frame, "no colour and no depth: nothing to see")
        if self.config.body == "off":
            return self._empty(frame, "a colour-only camera needs body tracking (--body auto or on)")
        if self._tracker is None:
            # Pose is started on every frame, in the background: the relief pairs this frame's mask
            # with the newest finished pose (the previous frame's, or older; this frame's only on the first).
            self._tracker = BodyTracker(pose_every=1)
        tracker: BodyTracker = self._tracker  # type: ignore[assignment]
        t0 = time.perf_counter()
        obs = tracker.observe(frame.color)
        self.last_segment_ms = (time.perf_counter() - t0) * 1000
        if obs.mask is None or obs.landmarks_px is None or obs.world_m is None:
            return self._empty(frame, "no person in view")
        body = (obs.mask > 0.5).view(np.uint8)
        # The main person: the mask's pieces under the tracked person's torso.
        count, labels = cv2.connectedComponents(body, connectivity=8)
        h, w = body.shape
        keep = np.zeros(count, bool)
        for j in TORSO:
            x, y, vis = obs.landmarks_px[j]
            if vis > 0.3 and 0 <= int(x) < w and 0 <= int(y) < h:
                keep[labels[int(y), int(x)]] = True
        keep[0] = False
        if not keep.any():
            return self._empty(frame, "no person in view")
        mask = keep[labels]
        k = frame.intrinsics
        distance = estimate_distance_m(obs.landmarks_px, obs.world_m, k)
        depth = None if distance is None else relief_depth(mask, obs.landmarks_px, obs.world_m, k, distance)
        if depth is None or distance is None:
            return self._empty(frame, "no person in view (the pose is too uncertain for a relief)")
        depth = depth_from_units(np.round(depth * 1000.0), 0.001)
        z = obs.world_m[:, 2] + distance
        joints = np.stack(
            [(obs.landmarks_px[:, 0] - k.cx) / k.fx * z, (obs.landmarks_px[:, 1] - k.cy) / k.fy * z, z], 1
        )
        skeleton = Skeleton(
            joints_m=joints.astype(np.float32),
            visibility=np.clip(obs.landmarks_px[:, 2], 0, 1).astype(np.float32),
        )
        points, pixels, flat = backproject(depth, k, depth > 0)
        colors = frame.color.reshape(-1, 3)[flat]
        return PersonCloud(
            points_m=points,
            colors=np.ascontiguousarray(colors),
            capture_time_ns=frame.capture_time_ns,
            sequence=frame.sequence,
            participant=self.config.participant,
            frame="camera",
            intrinsics=k,
            pixels=pixels,
            depth_unit_m=0.001,
            world_from_camera=self.world_from_camera
            if self.world_from_camera is not None
            else _level_camera(skeleton),
            skeleton=skeleton,
            serial=frame.serial,
        )

    def _empty(self, frame: RGBDFrame, status: str) -> PersonCloud:
        return PersonCloud(
            points_m=np.zeros((0, 3), np.float32),
            colors=np.zeros((0, 3), np.uint8),
            capture_time_ns=frame.capture_time_ns,
            sequence=frame.sequence,
            participant=self.config.participant,
            intrinsics=frame.intrinsics,
            pixels=np.zeros((0, 2), np.uint16),
            depth_unit_m=frame.depth_unit_m,
            serial=frame.serial,
            status=status,
        )


def _level_camera(skeleton: object) -> np.ndarray:
    """``world_from_camera`` for a webcam assumed level: the feet (or, unseen, the hips at 0.95 m) on the floor."""
    from holo.body import L_ANKLE, L_HIP, R_ANKLE, R_HIP

    j = skeleton.joints_m  # type: ignore[attr-defined]
    vis = skeleton.visibility  # type: ignore[attr-defined]
    m = np.diag(
        [1.0, -1.0, -1.0, 1.0]
    )  # camera x right, y down, z forward -> world x, up, towards the camera
    feet = [i for i in (L_ANKLE, R_ANKLE) if vis[i] > 0.5]
    if feet:
        m[1, 3] = float(max(j[i, 1] for i in feet)) + 0.07  # ankles sit ~7 cm above the floor
    else:
        m[1, 3] = float((j[L_HIP, 1] + j[R_HIP, 1]) / 2) + 0.95
    return m
