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

from holo.errors import ConfigError
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

    def __post_init__(self) -> None:
        if self.max_points is not None and self.max_points < 1:
            raise ConfigError(f"max points must be at least 1, got {self.max_points}")
        if not self.participant or len(self.participant.encode()) > 64 or "/" in self.participant:
            raise ConfigError(f"participant name must be 1–64 bytes without '/', got {self.participant!r}")


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
        self.segmenter = segmenter or DepthPersonSegmenter(self.config.segmenter)
        self.world_from_camera = world_from_camera
        self.last_segment_ms = 0.0

    def process(self, frame: RGBDFrame) -> PersonCloud:
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
        skeleton = getattr(seg, "skeleton", None)
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
