from __future__ import annotations

import numpy as np
import pytest

from holo.errors import IntrinsicsError, SourceError
from holo.frame import Intrinsics, PersonCloud, RGBDFrame

K = Intrinsics(width=640, height=480, fx=525, fy=525, cx=319.5, cy=239.5)


def test_intrinsics_scaling_keeps_the_field_of_view() -> None:
    half = K.scaled(320, 240)
    assert half.fx == pytest.approx(262.5)
    assert half.cx == pytest.approx(159.5)
    assert half.cy == pytest.approx(119.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fx": 0.5}, "field of view"),
        ({"fx": -525}, "positive"),
        ({"fy": 1e6}, "field of view"),
        ({"cx": 2000}, "principal point"),
        ({"width": 0}, "width"),
        ({"cy": float("nan")}, "finite"),
    ],
)
def test_absurd_intrinsics_are_refused(kwargs: dict[str, float], message: str) -> None:
    values = {"width": 640, "height": 480, "fx": 525.0, "fy": 525.0, "cx": 319.5, "cy": 239.5} | kwargs
    with pytest.raises(IntrinsicsError, match=message):
        Intrinsics(**values)  # type: ignore[arg-type]


def test_frame_refuses_mismatched_colour_and_depth() -> None:
    with pytest.raises(SourceError, match="colour is 320×240 but depth is 640×480"):
        RGBDFrame(
            depth_m=np.zeros((480, 640), np.float32),
            color=np.zeros((240, 320, 3), np.uint8),
            intrinsics=K,
            capture_time_ns=0,
            sequence=0,
        )


def test_frame_refuses_integer_depth() -> None:
    with pytest.raises(SourceError, match="float32 image in metres"):
        RGBDFrame(
            depth_m=np.zeros((480, 640), np.uint16), color=None, intrinsics=K, capture_time_ns=0, sequence=0
        )


def test_cloud_in_world_applies_the_placement() -> None:
    pose = np.eye(4)
    pose[:3, 3] = (1.0, 2.0, 3.0)
    cloud = PersonCloud(
        points_m=np.zeros((2, 3), np.float32),
        colors=np.zeros((2, 3), np.uint8),
        capture_time_ns=5,
        sequence=1,
        world_from_camera=pose,
    )
    world = cloud.in_world()
    assert world.frame == "world"
    np.testing.assert_allclose(world.points_m, [[1, 2, 3], [1, 2, 3]])
    assert world.in_world() is world
