"""Person extraction: which pixels of an RGB-D frame belong to people.

:class:`DepthPersonSegmenter` works from depth alone:

1. keep pixels inside the working volume (``near_m`` .. ``far_m`` from the camera);
2. find the floor with RANSAC (a plane tilted at most 50° from the camera's "down", with nothing
   below it) and drop everything within ``floor_margin_m`` of it — tracked from frame to frame;
3. cut the depth image along depth discontinuities — only the far side of each jump, so the
   person keeps its silhouette while mixed "flying" pixels (which lie behind it) are cut away —
   and label the connected pieces;
4. keep the pieces shaped like a person: 0.9–2.4 m tall, or at least 0.35 m for a close-up (cut
   by the side or bottom border of the image and filling over a third of its height, as head and
   shoulders do); at most 2.5 m wide; and not flat (walls, tables,
   screens and boxes are planar: a piece whose thinnest principal spread is under 1.2 cm, or
   under 15 % of its middle spread, is dropped);
5. attach the pieces a person's own depth jumps cut off (an arm held in front of the torso, a
   raised hand): a piece within 4 pixels of a person in the image, within 0.6 m of its depth, at most
   1.2 m across and not a flat slab (a strip of wall or cupboard beside them) joins it (twice, so a
   hand joins through its forearm).

``keep="all"`` keeps every person (a camera looking at a group); ``keep="main"`` keeps one: the
piece nearest the camera weighted by how central it is, and — to avoid flicker — the piece closest
to the previous frame's main person when one lies within 0.5 m of it.

Other segmenters (MediaPipe, in :mod:`holo.bodyseg`) implement the same :class:`PersonSegmenter`
protocol and can reuse the depth stages through :meth:`DepthPersonSegmenter.candidates`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal, Protocol

import cv2
import numpy as np

from holo.errors import ConfigError
from holo.frame import Intrinsics, RGBDFrame, Skeleton
from holo.geometry import Plane, fit_plane_ransac, pixel_rays, refine_plane

__all__ = ["DepthPersonSegmenter", "PersonBlob", "PersonSegmenter", "Segmentation", "SegmenterConfig"]

logger = logging.getLogger(__name__)

KeepMode = Literal["all", "main"]
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
_RECT = np.ones((3, 3), np.uint8)


@dataclass(frozen=True, slots=True)
class SegmenterConfig:
    near_m: float = 0.3
    far_m: float = 4.5
    keep: KeepMode = "all"
    floor_margin_m: float = 0.025
    min_height_m: float = 0.35
    min_free_height_m: float = 0.9
    max_height_m: float = 2.4
    max_width_m: float = 2.5
    min_thickness_m: float = 0.012
    min_thickness_ratio: float = 0.15
    erode_px: int = 0
    attach_depth_m: float = 0.6
    attach_size_m: float = 1.2

    def __post_init__(self) -> None:
        if not 0.0 <= self.near_m < self.far_m:
            raise ConfigError(
                f"working volume must have 0 <= near < far metres, got {self.near_m}..{self.far_m}"
            )
        if self.keep not in ("all", "main"):
            raise ConfigError(f"keep must be 'all' or 'main', got {self.keep!r}")


@dataclass(frozen=True, slots=True)
class PersonBlob:
    """One connected piece of the depth image judged to be a person."""

    label: int
    pixels: int
    centroid_m: np.ndarray  # camera frame
    height_m: float
    width_m: float
    bbox: tuple[int, int, int, int]  # x, y, w, h in pixels


@dataclass(slots=True)
class Segmentation:
    mask: np.ndarray  # HxW bool
    floor: Plane | None = None
    people: list[PersonBlob] = field(default_factory=list)
    status: str = ""
    skeleton: Skeleton | None = None


class PersonSegmenter(Protocol):
    def segment(self, frame: RGBDFrame) -> Segmentation: ...


class DepthPersonSegmenter:
    """Depth-only person extraction (see the module docstring). Keeps state between frames."""

    refit_every = 15

    def __init__(self, config: SegmenterConfig | None = None) -> None:
        self.config = config or SegmenterConfig()
        self.floor: Plane | None = None
        self._main_centroid: np.ndarray | None = None
        self._frames = 0
        self._stats = np.zeros((0, 5), np.int32)
        self._scale = 1
        self._work: tuple[np.ndarray, Intrinsics] = (
            np.zeros((1, 1), np.float32),
            Intrinsics(1, 1, 1.0, 1.0, 0.0, 0.0),
        )
        self._mean_z = np.zeros(0)
        self._counts = np.zeros(0)
        self._flat = np.zeros(0, bool)

    # -- stages ---------------------------------------------------------------------------------
    def find_floor(self, frame: RGBDFrame, valid: np.ndarray) -> Plane | None:
        """The floor plane in camera coordinates (normal up), tracked from frame to frame.

        A full RANSAC search runs on the first frame, every ``refit_every`` frames and whenever the
        tracked plane loses its support; in between the last plane is refined by least squares on
        its inliers, which is ten times cheaper and keeps the floor from jittering.
        """
        rx, ry = pixel_rays(frame.intrinsics)
        step = max(1, int(np.sqrt(valid.size / 4000)))
        sub = valid[::step, ::step]
        z = frame.depth_m[::step, ::step][sub]
        if len(z) < 50:
            return self.floor
        pts = np.stack([rx[::step, ::step][sub] * z, ry[::step, ::step][sub] * z, z], axis=1).astype(
            np.float64
        )
        if self.floor is not None and self._frames % self.refit_every != 0:
            tracked = refine_plane(pts, self.floor, threshold_m=0.03)
            if tracked is not None and tracked.inlier_fraction >= 0.5 * self.floor.inlier_fraction:
                return tracked
        plane = fit_plane_ransac(
            pts,
            threshold_m=0.03,
            iterations=150,
            up_hint=np.array([0.0, -1.0, 0.0]),
            max_tilt_deg=50.0,
            min_inlier_fraction=0.04,
            seed=self._frames,
            extra_hypotheses=[self.floor] if self.floor is not None else None,
            max_below_fraction=0.02,
        )
        # The camera must be above it (between 0.15 m and 4 m).
        if plane is not None and not 0.15 <= plane.offset <= 4.0:
            plane = None
        return plane

    def candidates(self, frame: RGBDFrame) -> tuple[np.ndarray, np.ndarray, list[PersonBlob], Plane | None]:
        """Full-resolution keep mask, work-resolution labels, person-shaped pieces, floor plane.

        Pieces are found on a work image of every ``scale``-th pixel (2 for VGA and larger), four
        times cheaper than full resolution; :meth:`segment` maps them back onto the full-resolution
        keep mask (see there).
        """
        cfg = self.config
        z = frame.depth_m
        valid = (z > cfg.near_m) & (z < cfg.far_m)
        floor = self.find_floor(frame, valid)
        self.floor = floor
        self._frames += 1
        keep = valid
        if floor is not None:
            rx, ry = pixel_rays(frame.intrinsics)
            n = floor.normal.astype(np.float32)
            signed = (n[0] * rx + n[1] * ry + n[2]) * z + np.float32(floor.offset)
            keep = keep & (signed > np.float32(cfg.floor_margin_m) + np.float32(0.004) * z * z)
        # Depth discontinuities cut the image into pieces; a pixel is cut when a neighbour lies
        # nearer than it by more than the threshold (it is the far side of the jump).
        zz = np.where(valid, z, np.float32(1e6))
        scale = 2 if frame.intrinsics.width >= 480 else 1
        # Full resolution: any of the 8 neighbours counts, so every pixel next to a nearer one is cut.
        keep_full = keep & (
            cv2.erode(zz, _RECT, borderType=cv2.BORDER_REPLICATE) >= np.float32(0.96) * z - np.float32(0.02)
        )
        zw, zzw = z[::scale, ::scale], zz[::scale, ::scale]
        keep_w = keep[::scale, ::scale] & (
            cv2.erode(np.ascontiguousarray(zzw), _CROSS, borderType=cv2.BORDER_REPLICATE)
            >= np.float32(0.96) * zw - np.float32(0.02)
        )
        k = frame.intrinsics
        work_k = Intrinsics(
            width=zw.shape[1],
            height=zw.shape[0],
            fx=k.fx / scale,
            fy=k.fy / scale,
            cx=k.cx / scale,
            cy=k.cy / scale,
        )
        self._scale = scale
        self._work = (np.ascontiguousarray(zw), work_k)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(keep_w.view(np.uint8), connectivity=4)
        self._stats = np.asarray(stats, np.int32)
        people = self._person_shaped(self._work[0], work_k, labels, stats, count)
        return keep_full, labels, people, floor

    def _person_shaped(
        self, depth_m: np.ndarray, k: Intrinsics, labels: np.ndarray, stats: np.ndarray, count: int
    ) -> list[PersonBlob]:
        cfg = self.config
        # The smallest person-like piece at the far end of the volume, with margin.
        min_area = max(150, int(0.5 * (cfg.min_height_m * k.fy / cfg.far_m) * (0.15 * k.fx / cfg.far_m)))
        lab = labels
        z = depth_m
        rx, ry = pixel_rays(k)
        sel = lab > 0
        lab_s = lab[sel]
        zs = z[sel]
        n = np.bincount(lab_s, minlength=count).astype(np.float64)
        mean_z = np.bincount(lab_s, zs, count) / np.maximum(n, 1)
        self._mean_z = mean_z
        self._counts = n
        self._flat = np.zeros(count, bool)
        big = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= min_area)
        big = big[big != 0]
        if len(big) == 0:
            return []
        # Shape moments only for the big pieces, from every other pixel of the work image: a
        # piece's spread does not need every pixel, and this is the segmenter's costliest step.
        is_big = np.zeros(count, bool)
        is_big[big] = True
        sub = labels[::2, ::2]
        in_big = is_big[sub]
        lab_b = sub[in_big]
        zb = depth_m[::2, ::2][in_big].astype(np.float64)
        cols = (rx[::2, ::2][in_big] * zb, ry[::2, ::2][in_big] * zb, zb)
        nb = np.maximum(np.bincount(lab_b, minlength=count), 1).astype(np.float64)
        mean = [np.bincount(lab_b, c, count) / nb for c in cols]
        cov = np.zeros((count, 3, 3))
        for i in range(3):
            for j in range(i, 3):
                m = np.bincount(lab_b, cols[i] * cols[j], count) / nb - mean[i] * mean[j]
                cov[:, i, j] = cov[:, j, i] = m
        people: list[PersonBlob] = []
        height_px, width_px = labels.shape
        big = big[n[big] >= 40]
        all_spreads = (
            np.sqrt(np.clip(np.linalg.eigvalsh(cov[big]), 0, None)) if len(big) else np.zeros((0, 3))
        )
        for label, spreads in zip(big, all_spreads):
            x, y, w, h, area = (int(v) for v in stats[label])
            zc = float(mean[2][label])
            height_m = h * zc / k.fy
            width_m = w * zc / k.fx
            thin, middle = float(spreads[0]), float(spreads[1])
            # For re-attaching pieces only the shape ratio counts: a forearm is thin but round, a
            # strip of wall is flat.
            self._flat[label] = thin < cfg.min_thickness_ratio * middle
            # A close-up (head and shoulders) is cut by the image border and fills much of its height.
            margin = 0.02 * height_px
            at_border = x <= margin or x + w >= width_px - margin or y + h >= height_px - margin
            close_up = at_border and h >= 0.35 * height_px
            min_height = cfg.min_height_m if close_up else cfg.min_free_height_m
            shaped = (
                min_height <= height_m <= cfg.max_height_m
                and width_m <= cfg.max_width_m
                and thin >= cfg.min_thickness_m
                and thin >= cfg.min_thickness_ratio * middle
            )
            logger.debug(
                "piece %d: %d px at %.2f m, %.2f x %.2f m, spreads %.3f/%.3f -> %s",
                label,
                area,
                zc,
                height_m,
                width_m,
                thin,
                middle,
                "person" if shaped else "dropped",
            )
            if shaped:
                centroid = np.array([mean[0][label], mean[1][label], zc])
                sc = self._scale
                people.append(
                    PersonBlob(
                        int(label),
                        area * sc * sc,
                        centroid,
                        height_m,
                        width_m,
                        (x * sc, y * sc, w * sc, h * sc),
                    )
                )
        return people

    def choose_main(self, people: list[PersonBlob], frame: RGBDFrame) -> PersonBlob | None:
        """The main person: the previous one if still there, else nearest and most central."""
        if not people:
            self._main_centroid = None
            return None
        if self._main_centroid is not None:
            dists = [float(np.linalg.norm(p.centroid_m - self._main_centroid)) for p in people]
            best = int(np.argmin(dists))
            if dists[best] < 0.5:
                self._main_centroid = people[best].centroid_m
                return people[best]
        k = frame.intrinsics

        def score(p: PersonBlob) -> float:
            off_centre = abs(p.centroid_m[0] / p.centroid_m[2]) * k.fx / k.width  # 0 centre .. ~0.5 edge
            return float(p.centroid_m[2]) * (1.0 + 2.0 * off_centre)

        main = min(people, key=score)
        self._main_centroid = main.centroid_m
        return main

    def _attach(
        self, mask: np.ndarray, labels: np.ndarray, lut: np.ndarray, person_z: np.ndarray, k: Intrinsics
    ) -> np.ndarray:
        """Join pieces that a person's own depth jumps cut off (see the module docstring).

        ``person_z`` holds the depth (metres) of each person the pieces may join.
        """
        cfg = self.config
        reach = max(1, round(4 / self._scale))  # 4 full-resolution pixels
        stats_w, stats_h = self._stats[:, cv2.CC_STAT_WIDTH], self._stats[:, cv2.CC_STAT_HEIGHT]
        for _ in range(2):
            ring = cv2.dilate(mask.view(np.uint8), np.ones((2 * reach + 1,) * 2, np.uint8)).view(bool) & ~mask
            present = np.bincount(labels[ring], minlength=len(lut)) > 0
            present[0] = False
            touching = np.flatnonzero(present & ~lut)
            added = False
            for label in touching:
                if label >= len(self._mean_z) or self._counts[label] == 0:
                    continue
                zc = self._mean_z[label]
                if np.min(np.abs(person_z - zc)) > cfg.attach_depth_m:
                    continue
                size = max(stats_w[label] * zc / k.fx, stats_h[label] * zc / k.fy)
                if size > cfg.attach_size_m or (size > 0.25 and self._flat[label]):
                    continue  # too big, or a slab of wall or furniture beside the person
                lut[label] = True
                added = True
            if not added:
                break
            mask = lut[labels]
        return mask

    def full_resolution(self, mask_w: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """A work-resolution mask (from :meth:`candidates`' labels) at full resolution, within ``keep``.

        Each work pixel stands for its scale x scale block; the block's pixels are kept where the
        full-resolution keep mask keeps them. A background pixel inside a person's block touches
        that person's nearer pixel, so the 8-neighbour cut removed it.
        """
        if self._scale > 1:
            h, w = keep.shape
            mask_w = cv2.resize(mask_w.view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).view(bool)
        return mask_w & keep

    # -- the whole thing --------------------------------------------------------------------------
    def segment(self, frame: RGBDFrame) -> Segmentation:
        keep, labels, people, floor = self.candidates(frame)
        if self.config.keep == "main":
            main = self.choose_main(people, frame)
            people = [main] if main is not None else []
        if not people:
            return Segmentation(mask=np.zeros(frame.shape, bool), floor=floor, status="no person in view")
        lut = np.zeros(labels.max() + 1, bool)
        lut[[p.label for p in people]] = True
        person_z = np.array([p.centroid_m[2] for p in people])
        mask_w = self._attach(lut[labels], labels, lut, person_z, self._work[1])
        mask = self.full_resolution(mask_w, keep)
        if self.config.erode_px > 0:
            kernel = cv2.getStructuringElement(cv2.MORPH_CROSS, (2 * self.config.erode_px + 1,) * 2)
            mask = cv2.erode(mask.view(np.uint8), kernel).view(bool)
        return Segmentation(mask=mask, floor=floor, people=people)
