"""Person extraction with body tracking: MediaPipe's person mask combined with depth, plus skeletons.

For a depth camera (:class:`BodySegmenter`):

1. the depth stages of :class:`~holo.segment.DepthPersonSegmenter` cut the frame into pieces along
   depth jumps and drop the floor;
2. MediaPipe's person mask chooses the pieces: a piece is a person's if at least half of it lies in
   the (slightly dilated) mask — so a mask edge that spills onto the wall behind never brings the
   wall in: the wall is a different piece, and mostly outside the mask;
3. the chosen pieces are trimmed to the dilated mask (a chair at the person's depth, touching
   them, is cut away where the mask ends); small pieces cut off a chosen one by its own depth jumps
   (a raised forearm, thin enough to escape MediaPipe's coarse mask) are re-attached as the depth
   segmenter does, whole;
4. with ``keep="main"`` only the main person is kept: the nearest and most central person-shaped
   piece, and the same piece in later frames while it stays within 0.5 m (no flicker), plus the
   small pieces cut off it (an arm in front of the body);
5. MediaPipe Pose runs on the kept people's bounding box (with a 15 % margin) — with several people
   in view that makes it find the main person; the skeleton: each landmark takes the depth under it (the median of the person's valid pixels in
   a small window) plus 3 cm to reach the joint inside the body; landmarks without depth
   (occluded, off the edge) take MediaPipe's metric world landmarks, moved onto the measured ones
   (a least-squares translation over the joints with depth). Visibility is MediaPipe's.
6. plausibility: a "person" whose measured torso (mid-shoulders to mid-hips) is under 20 cm or
   over 90 cm long, or whose shoulders are over 80 cm apart, is not a person (a printed picture, a toy, the cartoon on a mug) and
   is rejected with a status saying so.

Without colour, or without mediapipe, the depth-only segmenter is used as is.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from holo.body import L_HIP, L_SHOULDER, R_HIP, R_SHOULDER, BodyObservation, BodyTracker
from holo.frame import RGBDFrame, Skeleton
from holo.geometry import pixel_rays
from holo.segment import DepthPersonSegmenter, Segmentation, SegmenterConfig

__all__ = ["BodySegmenter", "lift_skeleton", "plausible_person"]

logger = logging.getLogger(__name__)

JOINT_DEPTH_M = 0.03  # from the body's surface to the joint inside it
MASK_THRESHOLD = 0.5


class BodySegmenter:
    def __init__(
        self,
        config: SegmenterConfig | None = None,
        *,
        tracker: BodyTracker | None = None,
        pose_every: int = 3,
    ) -> None:
        self.depth = DepthPersonSegmenter(config)
        self.config = self.depth.config
        self.tracker = tracker or BodyTracker(pose_every=pose_every)
        self.last_observation: BodyObservation | None = None

    def segment(self, frame: RGBDFrame) -> Segmentation:
        if frame.color is None:
            return self.depth.segment(frame)
        body_prob = self.tracker.segment(frame.color)
        if body_prob is None:
            return self.depth.segment(frame)
        keep, labels, people, floor = self.depth.candidates(frame)
        scale = self.depth._scale
        body = body_prob > MASK_THRESHOLD
        if not body.any():
            return self._empty(frame, floor, "no person in view")
        body_dilated = cv2.dilate(body.view(np.uint8), np.ones((9, 9), np.uint8)).view(bool)
        body_w = body_dilated[::scale, ::scale][: labels.shape[0], : labels.shape[1]]
        count = int(labels.max()) + 1
        total = np.bincount(labels.ravel(), minlength=count)
        inside = np.bincount(labels[body_w], minlength=count)
        chosen = (inside >= 0.5 * np.maximum(total, 1)) & (total >= 20)
        chosen[0] = False
        if self.config.keep == "main":
            chosen = self._main_person(chosen, labels, frame, people)
        if not chosen.any():
            return self._empty(frame, floor, "no person in view")
        # Thin limbs (a raised forearm) often escape MediaPipe's coarse mask; the depth stages re-attach
        # the small pieces a person's own depth jumps cut off. Those are kept whole, not trimmed.
        lut = chosen.copy()
        person_z = self.depth._mean_z[np.flatnonzero(chosen)]
        self.depth._attach(lut[labels], labels, lut, person_z, self.depth._work[1])
        attached = lut & ~chosen
        mask = self.depth.full_resolution(chosen[labels], keep) & body_dilated
        if attached.any():
            mask |= self.depth.full_resolution(attached[labels], keep)
        # Pose on the kept people's box: with several people in view this is the main person.
        landmarks, world, age = self.tracker.pose(frame.color, _box(mask, margin=0.15))
        obs = BodyObservation(mask=body_prob, landmarks_px=landmarks, world_m=world, pose_age_frames=age)
        self.last_observation = obs
        skeleton = lift_skeleton(frame, mask, obs) if obs.found else None
        if skeleton is not None:
            ok, reason = plausible_person(skeleton)
            if not ok:
                logger.info("rejected a person-like figure: %s", reason)
                return self._empty(
                    frame, floor, f"no person in view (rejected a person-like figure: {reason})"
                )
        return Segmentation(mask=mask, floor=floor, people=people, skeleton=skeleton)

    @staticmethod
    def _empty(frame: RGBDFrame, floor: object, status: str) -> Segmentation:
        return Segmentation(mask=np.zeros(frame.shape, bool), floor=floor, status=status)  # type: ignore[arg-type]

    def _main_person(
        self, chosen: np.ndarray, labels: np.ndarray, frame: RGBDFrame, people: list
    ) -> np.ndarray:  # type: ignore[type-arg]
        """The nearest, most central person (sticky from frame to frame), and the pieces cut off them."""
        candidates = [p for p in people if chosen[p.label]]
        main = self.depth.choose_main(candidates, frame) if candidates else None
        keep = np.zeros_like(chosen)
        if main is None:
            return keep
        keep[main.label] = True
        # Pieces of the same person cut off by depth jumps (an arm, a hand): chosen, small, not a
        # person of their own, touching the main piece and near its depth.
        others = {p.label for p in people}
        z = self.depth._mean_z
        ring = cv2.dilate(keep[labels].view(np.uint8), np.ones((5, 5), np.uint8)).view(bool)
        for label in np.unique(labels[ring]):
            if (
                label
                and chosen[label]
                and label not in others
                and abs(z[label] - main.centroid_m[2]) < self.config.attach_depth_m
            ):
                keep[label] = True
        return keep

    def close(self) -> None:
        self.tracker.close()


def _box(mask: np.ndarray, margin: float) -> tuple[int, int, int, int] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return None
    h, w = mask.shape
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    my, mx = int((y1 - y0) * margin), int((x1 - x0) * margin)
    y0, y1 = max(0, y0 - my), min(h, y1 + my)
    x0, x1 = max(0, x0 - mx), min(w, x1 + mx)
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def lift_skeleton(frame: RGBDFrame, mask: np.ndarray, obs: BodyObservation) -> Skeleton | None:
    """33 joints in the camera frame from the landmarks and the depth under them (see the module docstring)."""
    assert obs.landmarks_px is not None
    k = frame.intrinsics
    h, w = frame.shape
    rx, ry = pixel_rays(k)
    joints = np.full((33, 3), np.nan, np.float32)
    for j, (x, y, vis) in enumerate(obs.landmarks_px):
        u, v = round(float(x)), round(float(y))
        if vis < 0.5 or not (0 <= u < w and 0 <= v < h):
            continue  # hidden (the far shoulder of someone side-on): the depth there is someone else's
        window = (slice(max(0, v - 3), v + 4), slice(max(0, u - 3), u + 4))
        d = frame.depth_m[window]
        valid = d[mask[window] & (d > 0)]
        if len(valid) >= 4:
            z = float(np.median(valid)) + JOINT_DEPTH_M
            joints[j] = (rx[v, u] * z, ry[v, u] * z, z)
    measured = np.isfinite(joints[:, 0])
    if obs.world_m is not None and measured.sum() >= 3:
        offset = np.median(joints[measured] - obs.world_m[measured], axis=0)
        joints[~measured] = obs.world_m[~measured] + offset
    elif measured.sum() < 3:
        return None
    visibility = np.clip(obs.landmarks_px[:, 2], 0, 1).astype(np.float32)
    visibility[~np.isfinite(joints[:, 0])] = 0
    joints = np.nan_to_num(joints)
    return Skeleton(joints_m=joints.astype(np.float32), visibility=visibility, frame="camera")


def plausible_person(skeleton: Skeleton) -> tuple[bool, str]:
    """Is this skeleton the size of a person? (A printed figure or a toy is not.)

    The torso (mid-shoulders to mid-hips) must be 0.2-0.9 m long and the shoulders at most 0.8 m
    apart — measures that hold for a person seen from any side (side-on, the shoulders overlap).
    """
    j = skeleton.joints_m
    shoulders = float(np.linalg.norm(j[L_SHOULDER] - j[R_SHOULDER]))
    torso = float(np.linalg.norm((j[L_SHOULDER] + j[R_SHOULDER]) / 2 - (j[L_HIP] + j[R_HIP]) / 2))
    if torso < 0.2 or torso > 0.9 or shoulders > 0.8:
        return (
            False,
            f"its torso is {torso * 100:.0f} cm long and its shoulders {shoulders * 100:.0f} cm apart",
        )
    return True, ""
