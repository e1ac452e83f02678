"""Body tracking: MediaPipe 0.10.21 behind one small interface.

:class:`BodyTracker` turns an RGB image into a :class:`BodyObservation`: a person-probability mask
for the whole image (MediaPipe Selfie Segmentation, every frame, ~3 ms) and the 33 Pose landmarks
(MediaPipe Pose, ~20 ms) in pixels and in metres. Pose runs every ``pose_every`` frames (default 3,
so 10 Hz at 30 fps) on a worker thread — MediaPipe's graph runs outside the GIL — and the newest
result is used until the next arrives (``pose_age_frames`` says how old it is).

Only this module imports mediapipe. 0.10.21 is the last release whose wheel ships the Pose and
Selfie Segmentation models (``mp.solutions``); newer releases fetch models at run time, which fails
offline. Pose runs with ``model_complexity=1`` — the wheel's bundled model (the "lite" and "heavy"
variants are downloaded on first use). A newer MediaPipe API can replace this module alone.

Landmark conventions (MediaPipe's): image landmarks are pixels (x right, y down) with a visibility
in [0, 1]; world landmarks are metres with the origin between the hips, x right, y down and z away
from the camera (smaller is nearer) — the camera's axes, up to the person's distance.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from holo.errors import MissingDependencyError

__all__ = ["BodyObservation", "BodyTracker", "mediapipe_available"]

logger = logging.getLogger(__name__)

# MediaPipe's C++ logs its start-up at INFO/WARNING on stderr; keep errors only (set before import).
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Indices into the 33 landmarks (MediaPipe Pose's order, holo.frame.POSE_JOINT_NAMES).
L_SHOULDER, R_SHOULDER = 11, 12
L_HIP, R_HIP = 23, 24
L_ANKLE, R_ANKLE = 27, 28
TORSO = (L_SHOULDER, R_SHOULDER, L_HIP, R_HIP)


def mediapipe_available() -> bool:
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class BodyObservation:
    mask: np.ndarray | None  # H x W float32 person probability (all people)
    landmarks_px: np.ndarray | None  # (33, 3): x, y in pixels, visibility
    world_m: np.ndarray | None  # (33, 3) metres, hip-centred, camera-aligned axes
    pose_age_frames: int = 0

    @property
    def found(self) -> bool:
        return self.landmarks_px is not None


@contextlib.contextmanager
def _quiet_stderr(active: bool = True) -> Iterator[None]:
    """MediaPipe's C++ (absl, TFLite) prints start-up notes straight to file descriptor 2 whatever
    the log settings; silence them while the models load and run for the first time."""
    if not active:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class BodyTracker:
    """MediaPipe segmentation every frame and Pose every ``pose_every`` frames (see the module docstring)."""

    def __init__(
        self,
        *,
        pose_every: int = 3,
        segmentation: bool = True,
        pose: bool = True,
        static_images: bool = False,
    ) -> None:
        try:
            import mediapipe as mp
        except ImportError:
            raise MissingDependencyError(
                "body tracking needs mediapipe 0.10.21 (pip install mediapipe==0.10.21)"
            ) from None
        self.pose_every = max(1, pose_every)
        with _quiet_stderr():
            self._segmenter = (
                mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=1)
                if segmentation
                else None
            )
            self._pose = (
                mp.solutions.pose.Pose(
                    static_image_mode=static_images,
                    model_complexity=1,
                    enable_segmentation=False,
                    smooth_landmarks=not static_images,
                )
                if pose
                else None
            )
        self._segmented_once = False
        self._posed_once = False
        self._static = static_images
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="holo-pose")
        self._pending: concurrent.futures.Future[tuple[np.ndarray | None, np.ndarray | None]] | None = None
        self._latest: tuple[np.ndarray | None, np.ndarray | None] = (None, None)
        self._latest_frame = -1
        self._pending_frame = -1
        self._frame = 0

    def segment(self, rgb: np.ndarray) -> np.ndarray | None:
        """Person probability for every pixel (all people), H x W float32."""
        if self._segmenter is None:
            return None
        with _quiet_stderr(not self._segmented_once):
            result = self._segmenter.process(np.ascontiguousarray(rgb))
        self._segmented_once = True
        return None if result.segmentation_mask is None else np.asarray(result.segmentation_mask, np.float32)

    def pose(
        self, rgb: np.ndarray, roi: tuple[int, int, int, int] | None = None
    ) -> tuple[np.ndarray | None, np.ndarray | None, int]:
        """(landmarks in the full image's pixels, world landmarks, age in frames) of the person in
        ``roi`` (x, y, w, h; None: the whole image). Runs Pose every ``pose_every`` calls in the
        background and returns the newest result (see the module docstring)."""
        if self._pose is None:
            return None, None, 0
        x0, y0 = (roi[0], roi[1]) if roi else (0, 0)
        crop = rgb[roi[1] : roi[1] + roi[3], roi[0] : roi[0] + roi[2]] if roi else rgb
        if self._static:  # single images: run Pose now, on this image
            self._latest = self._run_pose(np.ascontiguousarray(crop), x0, y0)
            self._latest_frame = self._frame
        else:
            if self._pending is not None and self._pending.done():
                self._latest = self._pending.result()
                self._latest_frame = self._pending_frame
                self._pending = None
            if self._pending is None and self._frame % self.pose_every == 0:
                # A (contiguous) copy: the caller may reuse the image's buffer while Pose runs.
                self._pending = self._executor.submit(self._run_pose, crop.copy(), x0, y0)
                self._pending_frame = self._frame
                if self._latest_frame < 0:  # the first frame: wait, so a skeleton exists from the start
                    self._latest = self._pending.result()
                    self._latest_frame = self._frame
                    self._pending = None
        landmarks, world = self._latest
        age = self._frame - self._latest_frame if self._latest_frame >= 0 else 0
        self._frame += 1
        return landmarks, world, age

    def observe(self, rgb: np.ndarray, roi: tuple[int, int, int, int] | None = None) -> BodyObservation:
        """Segmentation and pose of one RGB frame (H x W x 3 uint8)."""
        mask = self.segment(rgb)
        landmarks, world, age = self.pose(rgb, roi)
        return BodyObservation(mask=mask, landmarks_px=landmarks, world_m=world, pose_age_frames=age)

    def _run_pose(
        self, image: np.ndarray, x0: int = 0, y0: int = 0
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        assert self._pose is not None
        with _quiet_stderr(not self._posed_once):
            result = self._pose.process(image)
        self._posed_once = True
        if result.pose_landmarks is None:
            return None, None
        h, w = image.shape[:2]
        lm = result.pose_landmarks.landmark
        landmarks = np.array([[p.x * w + x0, p.y * h + y0, p.visibility] for p in lm], np.float32)
        world = None
        if result.pose_world_landmarks is not None:
            world = np.array([[p.x, p.y, p.z] for p in result.pose_world_landmarks.landmark], np.float32)
        return landmarks, world

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for solution in (self._segmenter, self._pose):
            if solution is not None:
                solution.close()
        self._segmenter = self._pose = None
