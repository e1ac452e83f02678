"""Person extraction on real frames and on the synthetic performer (with its ground truth).

How "the clouds hold the people and not the corridor" is checked on kinect_five_people:
- five pixels on the five people's torsos (picked by eye from five_people_color.png) are kept;
- six pixels on the corridor (back wall, posters, floor between the people, ceiling, side
  furniture) are dropped;
- at most 1 % of cloud points lie farther than 3.3 m (the farthest person stands at ~2.7–3 m; the
  corridor continues to 9 m), and at most 1 % within 3 cm of the floor plane;
- four person pieces 1.4–1.9 m tall are found (the two people in the middle touch and form one).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from holo.capture import CaptureConfig, CapturePipeline
from holo.segment import DepthPersonSegmenter, SegmenterConfig
from holo.sources import SourceOptions, open_source

KINECT = (525.0, 525.0, 319.5, 239.5)
TORSOS = [(80, 220), (190, 200), (330, 200), (415, 220), (530, 200)]
CORRIDOR = [(260, 150), (260, 440), (330, 40), (610, 330), (10, 200), (450, 100)]


def frame_of(spec: str, options: SourceOptions | None = None):  # type: ignore[no-untyped-def]
    with open_source(spec, options) as src:
        return next(iter(src))


def test_five_people_keeps_the_people_and_drops_the_corridor(five_people: Path) -> None:
    frame = frame_of(f"rgbd:{five_people}", SourceOptions(intrinsics=KINECT))
    seg = DepthPersonSegmenter().segment(frame)
    for u, v in TORSOS:
        assert seg.mask[v, u], f"person at pixel ({u}, {v}) was dropped"
    for u, v in CORRIDOR:
        assert not seg.mask[v, u], f"corridor pixel ({u}, {v}) was kept"
    assert seg.floor is not None
    cloud = CapturePipeline().process(frame)
    z = cloud.points_m[:, 2]
    far = float((z > 3.3).mean())
    near_floor = float((np.abs(seg.floor.distance(cloud.points_m.astype(np.float64))) < 0.03).mean())
    heights = sorted(round(p.height_m, 2) for p in seg.people)
    print(
        f"\nfive_people: {len(cloud)} points, {far:.2%} beyond 3.3 m, {near_floor:.2%} on the floor, piece heights {heights}"
    )
    assert far < 0.01
    assert near_floor < 0.01
    assert len(seg.people) == 4 and all(1.4 < h < 1.9 for h in heights)
    assert 120_000 < len(cloud) < 170_000


def test_floor_is_found_below_the_camera(five_people: Path) -> None:
    frame = frame_of(f"pcd:{five_people / 'five_people.pcd'}")
    seg = DepthPersonSegmenter().segment(frame)
    assert seg.floor is not None
    assert seg.floor.normal[1] < -0.95  # camera y is down, the floor's normal points up
    assert 1.0 < seg.floor.offset < 1.6  # a hand-held Kinect at chest height


def test_head_and_shoulders_close_up_is_a_person(person_depth: Path) -> None:
    frame = frame_of(f"pcd:{person_depth / 'person.pcd'}")
    seg = DepthPersonSegmenter().segment(frame)
    assert len(seg.people) == 1
    z = frame.depth_m[seg.mask]
    assert 0.55 < np.median(z) < 0.85  # the person, not the wall at 2+ m
    assert seg.mask[300, 240] and not seg.mask[60, 300]  # chest kept, wall dropped


def test_scene_without_a_person_gives_an_empty_cloud_and_a_status(desk: Path) -> None:
    with open_source(f"rgbd:{desk}") as src:
        pipeline = CapturePipeline()
        clouds = [pipeline.process(f) for f in src]
    assert all(len(c) == 0 for c in clouds)
    assert all(c.status == "no person in view" for c in clouds)


def test_synthetic_mask_matches_ground_truth() -> None:
    seg = DepthPersonSegmenter()
    ious = []
    with open_source("synthetic:1") as src:
        for _, frame in zip(range(30), src):
            mask = seg.segment(frame).mask
            valid = frame.depth_m > 0
            truth = frame.truth_mask & valid
            ious.append((mask & truth).sum() / ((mask | truth) & valid).sum())
    print(f"\nsynthetic IoU min {min(ious):.3f} mean {np.mean(ious):.3f}")
    assert min(ious) > 0.9


def test_main_person_is_stable_from_frame_to_frame(five_people: Path) -> None:
    frame = frame_of(f"rgbd:{five_people}", SourceOptions(intrinsics=KINECT))
    seg = DepthPersonSegmenter(SegmenterConfig(keep="main"))
    chosen = [seg.segment(frame).people[0].label for _ in range(5)]
    assert len(set(chosen)) == 1
    mask = seg.segment(frame).mask
    assert mask[200, 530] and not mask[220, 80]  # the nearest person (black shirt, 1.86 m) only


def test_world_placement_stands_the_people_on_the_floor(five_people: Path) -> None:
    frame = frame_of(f"rgbd:{five_people}", SourceOptions(intrinsics=KINECT))
    cloud = CapturePipeline().process(frame)
    world = cloud.in_world()
    y = world.points_m[:, 1]
    # Feet on the floor (lowest points a few cm above y = 0, the floor margin), heads below 2 m.
    assert -0.02 < np.percentile(y, 0.5) < 0.12
    assert 1.5 < np.percentile(y, 99.9) < 2.0


def test_max_points_subsamples_evenly() -> None:
    with open_source("synthetic") as src:
        frame = next(iter(src))
    full = CapturePipeline().process(frame)
    small = CapturePipeline(CaptureConfig(max_points=5000)).process(frame)
    assert 0 < len(small) <= 5000 < len(full)
    assert small.pixels is not None
    assert len(np.unique(small.pixels[:, 1])) > 50  # spread over the body, not one band


@pytest.mark.parametrize("keep", ["all", "main"])
def test_segmenter_config_is_validated(keep: str) -> None:
    SegmenterConfig(keep=keep)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="near < far"):
        SegmenterConfig(near_m=3, far_m=1)
