"""The shared space: who is there, where each one stands, and their latest cloud.

Every participant gets a *seat* on an arc 2 m in front of the viewer (who stands at the origin looking
along -z): the first straight ahead, the next to the right, then to the left, and so on, each far
enough along the arc from its neighbour for both widths plus 0.4 m — a wide group (a camera seeing
several people) takes a wide seat, and nobody overlaps. A cloud arrives in its own world frame (floor at
y = 0, the person facing +z, towards their camera); the seat transform moves the person's feet to
the seat and turns them to face the viewer. The person's floor position is smoothed over time, so
walking is kept but jitter is not.

Clouds come from the bus (:class:`BusFeed`, a background thread that decodes and keeps only the
newest frame per participant) or from a file. A participant whose frames stop fades out over
``fade_s`` seconds after ``timeout_s`` and then leaves the scene; a new stream brings it back.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from holo.frame import PersonCloud

__all__ = [
    "BusFeed",
    "Participant",
    "Scene",
    "ViewData",
    "prepare_view",
    "seat_angles",
    "seat_transform",
    "view_cloud",
]

logger = logging.getLogger(__name__)

SEAT_RADIUS_M = 2.0
SEAT_GAP_M = 0.4


@dataclass(frozen=True)
class ViewData:
    """A cloud made ready for the scene (the costly part, done off the render thread)."""

    cloud: PersonCloud
    world_from_camera: np.ndarray
    feet_xz: np.ndarray | None
    width_m: float | None
    spacing_m: float | None


def prepare_view(cloud: PersonCloud, *, measure_spacing: bool) -> ViewData:
    # Placement needs statistics, not every point: they come from a ~20k-point sample. The renderer
    # applies world_from_camera itself, so a camera-frame cloud is never transformed here.
    step = max(1, len(cloud) // 20000)
    sample, world_from_camera = view_cloud(cloud, step=step)
    feet = width = spacing = None
    if len(sample):
        lo, hi = np.percentile(sample[:, 0], [1, 99])
        feet = np.array([(lo + hi) / 2, float(np.median(sample[:, 2]))])
        width = max(0.6, float(hi - lo))
        if measure_spacing:  # (a rigid placement keeps distances: the spacing of the cloud as sent)
            spacing = _organized_spacing(cloud) or _point_spacing(cloud.points_m)
    # The viewer does not need the pixel grid; dropping it keeps the hand-over small.
    return ViewData(cloud.with_(pixels=None), world_from_camera, feet, width, spacing)


def _organized_spacing(cloud: PersonCloud) -> float | None:
    """Point spacing of a camera's cloud from its optics: depth / focal length times the pixel stride."""
    if cloud.pixels is None or cloud.intrinsics is None or len(cloud) < 16:
        return None
    strides = []
    for axis in (0, 1):
        coord = cloud.pixels[:, axis]
        lo, hi = int(coord.min()), int(coord.max())
        used = int(np.count_nonzero(np.bincount(coord.astype(np.int64) - lo, minlength=hi - lo + 1)))
        strides.append((hi - lo + 1) / max(used, 1))
    z = float(np.median(cloud.points_m[:: max(1, len(cloud) // 20000), 2]))
    return float(np.clip(z / cloud.intrinsics.fx * np.sqrt(strides[0] * strides[1]), 0.002, 0.03))


def view_cloud(cloud: PersonCloud, *, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The cloud's points (every ``step``-th) in its world frame (floor y = 0, facing +z) and the
    matrix applied.

    A camera-frame cloud without ``world_from_camera`` is assumed to come from a level camera: x
    kept, y and z flipped, and lifted so its lowest points touch the floor.
    """
    points = cloud.points_m[::step]
    if cloud.frame == "world":
        return points, np.eye(4)
    if cloud.world_from_camera is not None:
        m = cloud.world_from_camera
        return points @ m[:3, :3].T.astype(np.float32) + m[:3, 3].astype(np.float32), m
    m = np.diag([1.0, -1.0, -1.0, 1.0])
    pts = points * np.array([1, -1, -1], np.float32)
    if len(pts):
        m[1, 3] = -float(np.percentile(pts[:, 1], 0.5))
        pts = pts + np.array([0, m[1, 3], 0], np.float32)
    return pts, m


def seat_angles(widths_m: list[float]) -> list[float]:
    """Angles (radians, + to the right) of seats 0..n-1 whose occupants are ``widths_m`` wide."""
    angles = [0.0] * len(widths_m)
    edge = {1: widths_m[0] / 2 if widths_m else 0.0, -1: widths_m[0] / 2 if widths_m else 0.0}
    for seat in range(1, len(widths_m)):
        side = 1 if seat % 2 else -1
        centre = edge[side] + SEAT_GAP_M + widths_m[seat] / 2  # arc length from the first seat
        angles[seat] = side * centre / SEAT_RADIUS_M
        edge[side] = centre + widths_m[seat] / 2
    return angles


def seat_transform(angle_rad: float, feet_xz: np.ndarray) -> np.ndarray:
    """``viewer_from_world`` for a participant seated at ``angle_rad`` whose feet are at ``feet_xz``."""
    seat_pos = np.array([SEAT_RADIUS_M * math.sin(angle_rad), 0.0, -SEAT_RADIUS_M * math.cos(angle_rad)])
    # Their world faces +z; the seat faces the origin: turn by -angle about y (towards the viewer).
    c, s = math.cos(-angle_rad), math.sin(-angle_rad)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = seat_pos - rot @ np.array([feet_xz[0], 0.0, feet_xz[1]])
    return m


@dataclass
class Participant:
    name: str
    seat: int
    cloud: PersonCloud | None = None
    world_from_camera: np.ndarray = field(default_factory=lambda: np.eye(4))
    feet_xz: np.ndarray | None = None
    width_m: float = 0.6
    seat_angle_rad: float = 0.0
    point_size_m: float = 0.006
    last_frame_s: float = 0.0
    arrived_s: float = 0.0
    version: int = 0  # bumped when a new cloud arrives (the renderer re-uploads)
    frames: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    fps: float = 0.0
    _times: list[float] = field(default_factory=list)

    @property
    def colors(self) -> np.ndarray:
        return self.cloud.colors if self.cloud is not None else np.zeros((0, 3), np.uint8)

    @property
    def points(self) -> np.ndarray:
        """The points in their own world frame (computed on every call: bind it once)."""
        cloud = self.cloud
        if cloud is None:
            return np.zeros((0, 3), np.float32)
        if cloud.frame == "world":
            return cloud.points_m
        m = self.world_from_camera
        return cloud.points_m @ m[:3, :3].T.astype(np.float32) + m[:3, 3].astype(np.float32)

    def model_matrix(self) -> np.ndarray:
        feet = self.feet_xz if self.feet_xz is not None else np.zeros(2)
        return seat_transform(self.seat_angle_rad, feet)

    def opacity(self, now_s: float, timeout_s: float, fade_s: float) -> float:
        silent = now_s - self.last_frame_s
        if silent <= timeout_s:
            return 1.0
        return max(0.0, 1.0 - (silent - timeout_s) / fade_s)


class Scene:
    """Thread-safe: the feed thread calls :meth:`update`, the render loop :meth:`snapshot`."""

    def __init__(
        self,
        *,
        timeout_s: float = 2.0,
        fade_s: float = 1.5,
        hide: set[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.timeout_s = timeout_s
        self.fade_s = fade_s
        self.hide = hide or set()
        self._lock = threading.Lock()
        self._participants: dict[str, Participant] = {}
        self.headpose: np.ndarray | None = None  # world_from_head published on holo/headpose

    def update(self, cloud: PersonCloud, now_s: float | None = None) -> None:
        """Add a cloud (preparing it here; :class:`BusFeed` prepares in its own process)."""
        if cloud.participant in self.hide:
            return
        with self._lock:
            p = self._participants.get(cloud.participant)
            measure = p is None or p.frames % 30 == 0
        self.apply(prepare_view(cloud, measure_spacing=measure), now_s)

    def apply(self, view: ViewData, now_s: float | None = None) -> None:
        cloud = view.cloud
        if cloud.participant in self.hide:
            return
        now_s = self.clock() if now_s is None else now_s
        with self._lock:
            p = self._participants.get(cloud.participant)
            if p is None:
                p = Participant(cloud.participant, self._free_seat(), arrived_s=now_s)
                self._participants[cloud.participant] = p
                logger.info("%s appears in seat %d", p.name, p.seat)
            p.cloud = cloud
            p.world_from_camera = view.world_from_camera
            if view.feet_xz is not None:
                # Smoothed: a walking person moves, a noisy median does not make them jitter.
                p.feet_xz = view.feet_xz if p.feet_xz is None else 0.8 * p.feet_xz + 0.2 * view.feet_xz
            if view.spacing_m is not None:
                p.point_size_m = view.spacing_m * 1.8
            if view.width_m is not None and (p.frames % 30 == 0 or abs(view.width_m - p.width_m) > 0.3):
                p.width_m = view.width_m
                self._reseat()
            p.last_frame_s = now_s
            p.version += 1
            p.frames += 1
            p._times = [t for t in [*p._times, now_s] if now_s - t < 2.0]
            span = p._times[-1] - p._times[0]
            p.fps = (len(p._times) - 1) / span if span > 0 else 0.0

    def update_stats(self, participant: str, stats: dict[str, Any]) -> None:
        peer_name = stats.get("peer")
        with self._lock:
            peer = self._participants.get(peer_name) if isinstance(peer_name, str) else None
            if peer is not None:
                peer.stats = stats  # the local call's view of its peer: latency, bitrate, drops
            if participant in self._participants:
                self._participants[participant].stats.setdefault("local", stats)

    def _reseat(self) -> None:
        ordered = sorted(self._participants.values(), key=lambda q: q.seat)
        widths = [0.6] * (ordered[-1].seat + 1) if ordered else []
        for q in ordered:
            widths[q.seat] = q.width_m
        angles = seat_angles(widths)
        for q in ordered:
            q.seat_angle_rad = angles[q.seat]

    def _free_seat(self) -> int:
        taken = {p.seat for p in self._participants.values()}
        return next(i for i in range(1000) if i not in taken)

    def snapshot(self, now_s: float | None = None) -> list[tuple[Participant, float]]:
        """(participant, opacity) for everyone visible; forgets those who faded out.

        Each participant is a shallow copy taken under the lock: the feed thread goes on updating
        the scene's own, so a copy's cloud, version and placement always belong together.
        """
        now_s = self.clock() if now_s is None else now_s
        with self._lock:
            out = []
            for name, p in list(self._participants.items()):
                alpha = p.opacity(now_s, self.timeout_s, self.fade_s)
                if alpha <= 0.0:
                    logger.info("%s left (no frames for %.1f s)", name, now_s - p.last_frame_s)
                    del self._participants[name]
                    continue
                out.append((copy.copy(p), alpha))
            return out

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._participants)


def _point_spacing(points: np.ndarray) -> float:
    """Median nearest-neighbour distance, from a tree over a quarter of the points (a surface's
    spacing halves at four times the density, so the quarter's spacing is halved)."""
    from scipy.spatial import cKDTree

    if len(points) < 32:
        return 0.006
    quarter = points[np.random.default_rng(0).permutation(len(points))[: max(8, len(points) // 4)]]
    sample = quarter[: min(2000, len(quarter))]
    dist, _ = cKDTree(quarter).query(sample, k=2)
    return float(np.clip(np.median(dist[:, 1]) / 2, 0.002, 0.03))


PIPE_BYTES = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size


def _widen_pipe(fd: int) -> None:
    """Give a pipe a 1 MiB buffer (Linux; elsewhere, or when refused, it keeps its own)."""
    import contextlib
    import fcntl

    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)


def _feed_main(stop: Any, conn: Any, address: str | None, log_level: int) -> None:  # the feed's process
    """Subscribe, decode the newest packet per participant, prepare it, hand it to the viewer.

    ``stop`` becomes readable (a message, or end of file when the viewer is gone) to stop."""
    import contextlib
    import os

    from holo.bus import Bus
    from holo.codec import StreamDecoder
    from holo.errors import HoloError

    logging.basicConfig(level=log_level, format="%(asctime)s view-feed %(levelname)s: %(message)s")
    with contextlib.suppress(OSError):
        os.nice(2)  # the render loop comes first
    bus = Bus(address)
    sub = bus.subscriber(["holo/"])
    decoder = StreamDecoder()
    frames: dict[str, int] = {}
    try:
        while not stop.poll():
            msg = sub.recv(timeout_s=0.05)
            if msg is None:
                continue
            newest: dict[str, tuple[bytes, int]] = {}
            while msg is not None:  # drain: only the latest cloud per participant is decoded
                topic, payload = msg
                parts = topic.split("/")
                if len(parts) == 3 and parts[2] == "cloud":
                    newest[parts[1]] = (payload, time.time_ns())
                elif (len(parts) == 3 and parts[2] == "stats") or topic == "holo/headpose":
                    conn.send(("message", topic, payload))
                msg = sub.recv(timeout_s=0)
            for name, (payload, arrival_ns) in newest.items():
                try:
                    cloud = decoder.decode(payload)
                except HoloError as exc:
                    logger.warning("skipped a packet on holo/%s/cloud: %s", name, exc)
                    conn.send(("refused", str(exc)))
                    continue
                n = frames.get(cloud.participant, 0)
                frames[cloud.participant] = n + 1
                conn.send(("cloud", prepare_view(cloud, measure_spacing=n % 30 == 0), arrival_ns))
    except (EOFError, OSError, KeyboardInterrupt):
        return
    finally:
        bus.close()


class BusFeed:
    """The bus, decoded in a process of its own; a thread hands prepared clouds to the scene.

    Decoding and preparing a 100k-point cloud takes milliseconds of CPU that, in the viewer's
    process, would wait behind GL calls holding the GIL (and make them wait): in its own process
    a packet is decoded while the current frame renders and appears in the next one. The feed
    decodes only the newest packet per participant (older ones are skipped); corrupt
    packets are skipped with a logged reason.
    """

    def __init__(self, scene: Scene, address: str | None = None) -> None:
        import multiprocessing

        self.scene = scene
        self.last_arrival_ns: dict[str, int] = {}
        self.last_ready_ns: dict[str, int] = {}  # when the decoded cloud reached the scene
        self.refused = 0
        ctx = multiprocessing.get_context("spawn")
        # Two one-way pipes, the data one widened: a cloud (1.5 MB at 100k points) then crosses in
        # two reads, where a socket pair's 200 kB buffer takes a dozen, and each read waits for this
        # process's GIL, which the render loop holds through its GL calls.
        self._conn, child_out = ctx.Pipe(duplex=False)
        child_stop, self._stop = ctx.Pipe(duplex=False)
        _widen_pipe(child_out.fileno())
        self._process = ctx.Process(
            target=_feed_main,
            args=(child_stop, child_out, address, logging.getLogger().getEffectiveLevel()),
            name="holo-view-feed",
            daemon=True,
        )
        self._process.start()
        child_out.close()
        child_stop.close()
        self._thread = threading.Thread(target=self._run, name="holo-view-feed", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                msg = self._conn.recv()
            except (EOFError, OSError):
                return
            kind = msg[0]
            if kind == "cloud":
                _, view, arrival_ns = msg
                self.last_arrival_ns[view.cloud.participant] = arrival_ns
                self.scene.apply(view)
                self.last_ready_ns[view.cloud.participant] = time.time_ns()
            elif kind == "refused":
                self.refused += 1
            elif kind == "message":
                _, topic, payload = msg
                if topic == "holo/headpose":
                    self._headpose(payload)
                else:
                    self._stats(topic.split("/")[1], payload)

    def _stats(self, name: str, payload: bytes) -> None:
        try:
            stats = json.loads(payload)
        except ValueError:
            return
        if isinstance(stats, dict):
            self.scene.update_stats(name, stats)

    def _headpose(self, payload: bytes) -> None:
        """``{"position": [x, y, z], "orientation": [x, y, z, w]}`` in metres, the viewer's frame."""
        from viewer.camera import pose_matrix

        try:
            msg = json.loads(payload)
            self.scene.headpose = pose_matrix(tuple(msg["orientation"]), tuple(msg["position"]))
        except (ValueError, KeyError, TypeError):
            logger.warning("ignored a malformed holo/headpose message")

    def close(self) -> None:
        import contextlib

        with contextlib.suppress(OSError, BrokenPipeError):
            self._stop.send(("stop",))
        self._process.join(3)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(2)
        self._conn.close()
        self._stop.close()
        self._thread.join(2)
