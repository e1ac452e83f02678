"""Skeletons beside the PLY files: one JSON per frame and one CSV for the whole capture.

``frame_000012.skeleton.json``: ``{"capture_time_ns", "sequence", "participant", "frame",
"joints": [{"index", "name", "x_m", "y_m", "z_m", "visibility"} x 33]}``.
``skeletons.csv``: one row per frame and joint with the same fields; appended frame by frame.
Coordinates are in the same frame as the PLY points (camera or world).
"""

from __future__ import annotations

import json
import os

from holo.errors import HoloError
from holo.frame import POSE_JOINT_NAMES, PersonCloud, Skeleton

__all__ = ["CSV_HEADER", "write_skeleton"]

CSV_HEADER = "capture_time_ns,sequence,participant,joint,name,x_m,y_m,z_m,visibility\n"


def write_skeleton(folder: str, cloud: PersonCloud, skeleton: Skeleton) -> None:
    """Write ``frame_<seq>.skeleton.json`` and append to ``skeletons.csv`` in ``folder``."""
    joints = [
        {
            "index": i,
            "name": name,
            "x_m": round(float(p[0]), 4),
            "y_m": round(float(p[1]), 4),
            "z_m": round(float(p[2]), 4),
            "visibility": round(float(v), 3),
        }
        for i, (name, p, v) in enumerate(zip(POSE_JOINT_NAMES, skeleton.joints_m, skeleton.visibility))
    ]
    record = {
        "capture_time_ns": cloud.capture_time_ns,
        "sequence": cloud.sequence,
        "participant": cloud.participant,
        "frame": skeleton.frame,
        "joints": joints,
    }
    json_path = os.path.join(folder, f"frame_{cloud.sequence:06d}.skeleton.json")
    csv_path = os.path.join(folder, "skeletons.csv")
    try:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(record, f)
        new = not os.path.exists(csv_path)
        with open(csv_path, "a", encoding="utf-8") as f:
            if new:
                f.write(CSV_HEADER)
            for j in joints:
                f.write(
                    f"{cloud.capture_time_ns},{cloud.sequence},{cloud.participant},{j['index']},{j['name']},"
                    f"{j['x_m']},{j['y_m']},{j['z_m']},{j['visibility']}\n"
                )
    except OSError as exc:
        raise HoloError(
            f"could not write the skeleton beside the clouds in {folder}: {exc.strerror or exc}"
        ) from None
