"""Body tracking on real images: MediaPipe masks combined with depth, skeletons, webcam-style reliefs.

Checks used for "human-sized": shoulders 0.2-0.6 m apart; a relief 0.1-0.8 m deep front to back;
the person within 0.3-3 m of the camera; a standing person's cloud 1.4-2.1 m tall in the world frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from holo.body import L_SHOULDER, R_SHOULDER, BodyTracker
from holo.bodyseg import BodySegmenter, lift_skeleton, plausible_person
from holo.capture import CaptureConfig, CapturePipeline
from holo.errors import SourceError
from holo.frame import Intrinsics, RGBDFrame
from holo.segment import SegmenterConfig
from holo.sources import SourceOptions, open_source
from tests.conftest import run_holo

KINECT = (525.0, 525.0, 319.5, 239.5)


def first(spec: str, options: SourceOptions | None = None) -> RGBDFrame:
    with open_source(spec, options) as src:
        return next(iter(src))


def joints_in_mask(
    frame_k: Intrinsics, skeleton: object, mask: np.ndarray, min_visibility: float = 0.6
) -> float:
    """Fraction of visible joints whose projection falls on the person (mask dilated by 5 px)."""
    import cv2

    j = skeleton.joints_m  # type: ignore[attr-defined]
    vis = skeleton.visibility  # type: ignore[attr-defined]
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((11, 11), np.uint8)).astype(bool)
    u = np.round(j[:, 0] / j[:, 2] * frame_k.fx + frame_k.cx).astype(int)
    v = np.round(j[:, 1] / j[:, 2] * frame_k.fy + frame_k.cy).astype(int)
    seen = (vis > min_visibility) & (u >= 0) & (u < mask.shape[1]) & (v >= 0) & (v < mask.shape[0])
    return float(grown[v[seen], u[seen]].mean()) if seen.any() else 0.0


def test_astronaut_becomes_a_human_sized_relief() -> None:
    from skimage import data

    image = data.astronaut()
    k = Intrinsics.from_fov(image.shape[1], image.shape[0], 60.0)
    frame = RGBDFrame(
        depth_m=np.zeros(image.shape[:2], np.float32),
        color=image,
        intrinsics=k,
        capture_time_ns=0,
        sequence=0,
        has_depth=False,
    )
    pipeline = CapturePipeline(CaptureConfig(body="on"))
    cloud = pipeline.process(frame)
    pipeline.close()
    assert cloud.status == "" and len(cloud) > 50_000
    assert cloud.skeleton is not None
    j = cloud.skeleton.joints_m
    shoulders = float(np.linalg.norm(j[L_SHOULDER] - j[R_SHOULDER]))
    z = cloud.points_m[:, 2]
    depth_span = float(np.percentile(z, 98) - np.percentile(z, 2))
    mask = np.zeros(k.shape, bool)
    mask[cloud.pixels[:, 1], cloud.pixels[:, 0]] = True  # type: ignore[index]
    inside = joints_in_mask(k, cloud.skeleton, mask)
    print(
        f"\nastronaut: {len(cloud)} points at {np.median(z):.2f} m, shoulders {shoulders:.2f} m, "
        f"relief {depth_span:.2f} m deep, {inside:.0%} of visible joints on the person"
    )
    assert 0.2 < shoulders < 0.6
    assert 0.1 < depth_span < 0.8
    assert 0.3 < float(np.median(z)) < 3.0
    assert inside > 0.9
    # Arms and head stand in front of/behind the torso as the pose says: the nose is nearer than the hips.
    assert j[0, 2] < (j[23, 2] + j[24, 2]) / 2 + 0.1


def test_five_people_main_person_is_whole_and_the_corridor_stays_out(five_people: Path) -> None:
    frame = first(f"rgbd:{five_people}", SourceOptions(intrinsics=KINECT))
    seg = BodySegmenter(SegmenterConfig(keep="main"))
    try:
        results = [seg.segment(frame) for _ in range(6)]
    finally:
        seg.close()
    s = results[-1]
    z = frame.depth_m[s.mask]
    behind = float((z > np.median(z) + 0.4).mean())
    assert s.skeleton is not None
    inside = joints_in_mask(frame.intrinsics, s.skeleton, s.mask)
    j = s.skeleton.joints_m
    shoulders = float(np.linalg.norm(j[L_SHOULDER] - j[R_SHOULDER]))
    # The whole person: tall in the world (floor-aligned by the depth stages), head to feet.
    from holo.capture import world_from_floor
    from holo.geometry import backproject

    points, _, _ = backproject(frame.depth_m, frame.intrinsics, s.mask)
    assert s.floor is not None
    m = world_from_floor(s.floor)
    y = points @ m[:3, :3].T[:, 1] + m[1, 3]
    height = float(np.percentile(y, 99.5) - np.percentile(y, 0.5))
    print(
        f"\nfive_people main person: {s.mask.sum()} px at {np.median(z):.2f} m, {behind:.2%} of points over 0.4 m "
        f"behind its median depth, {height:.2f} m tall, shoulders {shoulders:.2f} m, {inside:.0%} joints on it"
    )
    assert behind < 0.01
    assert 1.4 < height < 2.1
    assert 0.25 < shoulders < 0.6
    assert inside > 0.9
    # The same person every frame (no flicker between the five).
    centres = [np.mean(np.nonzero(r.mask)[1]) for r in results]
    assert np.ptp(centres) < 5


def test_all_people_mode_keeps_everyone_but_not_the_corridor(five_people: Path) -> None:
    frame = first(f"rgbd:{five_people}", SourceOptions(intrinsics=KINECT))
    seg = BodySegmenter(SegmenterConfig(keep="all"))
    try:
        s = seg.segment(frame)
    finally:
        seg.close()
    for u, v in [(80, 220), (190, 200), (330, 200), (415, 220), (530, 200)]:  # the five torsos
        assert s.mask[v, u]
    for u, v in [(260, 150), (330, 40), (610, 330)]:  # posters, ceiling, cupboard
        assert not s.mask[v, u]


def test_the_cartoon_on_the_mug_is_not_a_person(azure: Path) -> None:
    """MediaPipe Pose does find a "person" in the cartoon printed on the mug. Two things reject it:
    MediaPipe's person segmentation sees (almost) no person there, and, measured with depth, the
    figure is a few centimetres across — not a person's size."""
    frame = first(f"k4a:{azure / 'recording.mkv'}")
    tracker = BodyTracker(static_images=True)
    try:
        obs = tracker.observe(frame.color)  # type: ignore[arg-type]
    finally:
        tracker.close()
    assert obs.found, "MediaPipe no longer finds the cartoon: this test's premise changed"
    assert obs.mask is not None and (obs.mask > 0.5).sum() < 500
    skeleton = lift_skeleton(frame, frame.depth_m > 0, obs)
    assert skeleton is not None
    ok, reason = plausible_person(skeleton)
    print(f"\nthe mug's cartoon: {reason}")
    assert not ok and "cm" in reason
    pipeline = CapturePipeline(CaptureConfig(body="on", segmenter=SegmenterConfig(keep="main")))
    try:
        cloud = pipeline.process(frame)
    finally:
        pipeline.close()
    assert len(cloud) == 0 and cloud.status.startswith("no person in view")


def test_a_frame_without_a_person_is_an_empty_cloud_not_an_error(desk: Path) -> None:
    pipeline = CapturePipeline(CaptureConfig(body="on"))
    try:
        with open_source(f"rgbd:{desk}") as src:
            clouds = [pipeline.process(f) for f in src]
    finally:
        pipeline.close()
    assert all(len(c) == 0 and c.status.startswith("no person in view") for c in clouds)


def _write_video(path: Path, frames: list[np.ndarray], fps: int = 15) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_video_source_makes_reliefs_with_skeletons_and_writes_them(tmp_path: Path) -> None:
    with open_source("synthetic:4") as src:
        images = [f.color for _, f in zip(range(12), src)]
    video = tmp_path / "clip.mp4"
    _write_video(video, images)  # type: ignore[arg-type]
    out = tmp_path / "out"
    r = run_holo(
        "capture", "--source", f"video:{video}", "--count", "8", "--out", str(out), "--frame", "world"
    )
    assert r.returncode == 0, r.stderr
    from holo.ply import read_ply

    clouds = [read_ply(str(p)) for p in sorted(out.glob("frame_*.ply"))]
    assert len(clouds) == 8 and all(len(c) > 5000 for c in clouds)
    y = clouds[-1].points_m[:, 1]
    height = float(np.percentile(y, 99.5) - np.percentile(y, 0.5))
    assert 1.2 < height < 2.3  # the performer, standing, life-sized (assumed 60° field of view)
    assert (out / "skeletons.csv").exists() and len(list(out.glob("frame_*.skeleton.json"))) == 8
    rows = (out / "skeletons.csv").read_text().splitlines()
    assert rows[0].startswith("capture_time_ns,sequence,participant,joint,name,x_m,y_m,z_m,visibility")
    assert len(rows) == 1 + 8 * 33


def test_corrupt_video_is_a_clear_error(tmp_path: Path) -> None:
    with open_source("synthetic") as src:
        images = [f.color for _, f in zip(range(6), src)]
    video = tmp_path / "clip.mp4"
    _write_video(video, images)  # type: ignore[arg-type]
    data = video.read_bytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(data[: len(data) // 3])
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(4000))
    for path in (broken, junk):
        with pytest.raises(SourceError, match=path.name), open_source(f"video:{path}") as src:
            list(zip(range(10), src))
    r = run_holo("capture", "--source", f"video:{junk}", "--count", "1")
    assert r.returncode == 2 and "junk.mp4" in r.stderr and "Traceback" not in r.stderr


def test_skeleton_travels_in_the_packet(five_people: Path) -> None:
    from holo.codec import StreamDecoder, StreamEncoder

    frame = first(f"rgbd:{five_people}", SourceOptions(intrinsics=KINECT))
    pipeline = CapturePipeline(CaptureConfig(body="on", segmenter=SegmenterConfig(keep="main")))
    try:
        cloud = pipeline.process(frame)
    finally:
        pipeline.close()
    assert cloud.skeleton is not None
    back = StreamDecoder().decode(StreamEncoder("holo").encode_bytes(cloud))
    assert back.skeleton is not None
    np.testing.assert_array_equal(back.skeleton.joints_m, cloud.skeleton.joints_m)
    np.testing.assert_allclose(back.skeleton.visibility, cloud.skeleton.visibility, atol=1 / 255)
