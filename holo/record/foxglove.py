"""Foxglove's well-known schemas in JSON encoding, for ``holo export --foxglove``.

``/holo/<participant>/cloud`` as ``foxglove.PointCloud`` (x, y, z float32 and red, green, blue,
alpha uint8 in a 16-byte stride, frame ``world``), ``/holo/<participant>/skeleton`` as
``foxglove.SceneUpdate`` (a sphere per visible joint, one line list for the bones, a 0.5 s
lifetime), and ``/tf`` as ``foxglove.FrameTransform`` placing Holo's y-up ``world`` in a z-up
``map`` frame once a second, so Foxglove's 3D panel shows people upright with display frame
``map``. Field names and enum values follow Foxglove's JSON schemas (``foxglove.NumericType``
FLOAT32 = 7, UINT8 = 1; ``LineType`` LINE_LIST = 2; times as ``{sec, nsec}``; bytes as base64).
Messages keep the recording's ``log_time``; ``publish_time`` and ``timestamp`` are capture times.
"""

from __future__ import annotations

import base64
import json
from typing import IO, Any

import numpy as np

from holo.codec.packet import Packet
from holo.frame import POSE_BONES, PersonCloud, Skeleton
from holo.record.schemas import safe_name

__all__ = [
    "FRAME_TRANSFORM_SCHEMA",
    "POINT_CLOUD_SCHEMA",
    "POSE_BONES",
    "SCENE_UPDATE_SCHEMA",
    "FoxgloveWriter",
    "point_cloud_message",
    "skeleton_message",
]

VISIBLE = 0.3


def _time(t_ns: int) -> dict[str, int]:
    t_ns = max(0, t_ns)
    return {"sec": t_ns // 1_000_000_000, "nsec": t_ns % 1_000_000_000}


_IDENTITY_POSE = {
    "position": {"x": 0.0, "y": 0.0, "z": 0.0},
    "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0},
}


def _json_schema(title: str, description: str, properties: dict[str, Any]) -> bytes:
    return json.dumps(
        {"title": title, "description": description, "type": "object", "properties": properties}
    ).encode()


_TIME = {"type": "object", "properties": {"sec": {"type": "integer"}, "nsec": {"type": "integer"}}}
_VEC3 = {"type": "object", "properties": {k: {"type": "number"} for k in "xyz"}}
_QUAT = {"type": "object", "properties": {k: {"type": "number"} for k in "xyzw"}}
_POSE = {"type": "object", "properties": {"position": _VEC3, "orientation": _QUAT}}
_COLOR = {"type": "object", "properties": {k: {"type": "number"} for k in "rgba"}}
POINT_CLOUD_SCHEMA = _json_schema(
    "foxglove.PointCloud",
    "A collection of N-dimensional points (Foxglove's well-known schema, JSON encoding).",
    {
        "timestamp": _TIME,
        "frame_id": {"type": "string"},
        "pose": _POSE,
        "point_stride": {"type": "integer"},
        "fields": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "offset": {"type": "integer"},
                    "type": {"type": "integer", "description": "foxglove.NumericType: 1 UINT8 ... 7 FLOAT32"},
                },
            },
        },
        "data": {"type": "string", "contentEncoding": "base64"},
    },
)
SCENE_UPDATE_SCHEMA = _json_schema(
    "foxglove.SceneUpdate",
    "An update to the entities displayed in a 3D scene (Foxglove's well-known schema, JSON encoding).",
    {
        "deletions": {"type": "array", "items": {"type": "object"}},
        "entities": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "timestamp": _TIME,
                    "frame_id": {"type": "string"},
                    "id": {"type": "string"},
                    "lifetime": _TIME,
                    "frame_locked": {"type": "boolean"},
                    "metadata": {"type": "array", "items": {"type": "object"}},
                    "spheres": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"pose": _POSE, "size": _VEC3, "color": _COLOR},
                        },
                    },
                    "lines": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "type": {"type": "integer", "description": "0 strip, 1 loop, 2 list"},
                                "pose": _POSE,
                                "thickness": {"type": "number"},
                                "scale_invariant": {"type": "boolean"},
                                "points": {"type": "array", "items": _VEC3},
                                "color": _COLOR,
                                "colors": {"type": "array", "items": _COLOR},
                                "indices": {"type": "array", "items": {"type": "integer"}},
                            },
                        },
                    },
                },
            },
        },
    },
)
FRAME_TRANSFORM_SCHEMA = _json_schema(
    "foxglove.FrameTransform",
    "A transform between two reference frames (Foxglove's well-known schema, JSON encoding).",
    {
        "timestamp": _TIME,
        "parent_frame_id": {"type": "string"},
        "child_frame_id": {"type": "string"},
        "translation": _VEC3,
        "rotation": _QUAT,
    },
)
_FIELDS = [
    {"name": "x", "offset": 0, "type": 7},
    {"name": "y", "offset": 4, "type": 7},
    {"name": "z", "offset": 8, "type": 7},
    {"name": "red", "offset": 12, "type": 1},
    {"name": "green", "offset": 13, "type": 1},
    {"name": "blue", "offset": 14, "type": 1},
    {"name": "alpha", "offset": 15, "type": 1},
]
_POINT = np.dtype([("p", "<f4", 3), ("c", "u1", 4)])
_HUES = [(0.95, 0.45, 0.25), (0.3, 0.65, 0.95), (0.45, 0.85, 0.4), (0.9, 0.75, 0.3), (0.75, 0.45, 0.9)]


def point_cloud_message(cloud: PersonCloud, time_ns: int) -> dict[str, Any]:
    """A world-frame cloud as a ``foxglove.PointCloud`` (JSON encoding)."""
    points = cloud.points_in_world()
    rec = np.empty(len(points), _POINT)
    rec["p"] = points
    rec["c"][:, :3] = cloud.colors
    rec["c"][:, 3] = 255
    return {
        "timestamp": _time(time_ns),
        "frame_id": "world",
        "pose": _IDENTITY_POSE,
        "point_stride": _POINT.itemsize,
        "fields": _FIELDS,
        "data": base64.b64encode(rec.tobytes()).decode("ascii"),
    }


def skeleton_message(
    participant: str, skeleton: Skeleton, time_ns: int, sequence: int, hue: int
) -> dict[str, Any]:
    """A skeleton as a ``foxglove.SceneUpdate``: joint spheres and a line list of bones."""
    r, g, b = _HUES[hue % len(_HUES)]
    color = {"r": r, "g": g, "b": b, "a": 1.0}
    joints = skeleton.joints_m
    visible = skeleton.visibility >= VISIBLE

    def point(i: int) -> dict[str, float]:
        x, y, z = (float(v) for v in joints[i])
        return {"x": x, "y": y, "z": z}

    spheres = [
        {
            "pose": {"position": point(i), "orientation": _IDENTITY_POSE["orientation"]},
            "size": {"x": 0.05, "y": 0.05, "z": 0.05},
            "color": color,
        }
        for i in range(len(joints))
        if visible[i]
    ]
    bone_points = [point(i) for a, b_ in POSE_BONES if visible[a] and visible[b_] for i in (a, b_)]
    lines = []
    if bone_points:
        lines.append(
            {
                "type": 2,
                "pose": _IDENTITY_POSE,
                "thickness": 0.02,
                "scale_invariant": False,
                "points": bone_points,
                "color": color,
                "colors": [],
                "indices": [],
            }
        )
    entity = {
        "timestamp": _time(time_ns),
        "frame_id": skeleton.frame,
        "id": f"{participant}/skeleton",
        "lifetime": {"sec": 0, "nsec": 500_000_000},
        "frame_locked": False,
        "metadata": [
            {"key": "participant", "value": participant},
            {"key": "sequence", "value": str(sequence)},
        ],
        "arrows": [],
        "cubes": [],
        "spheres": spheres,
        "cylinders": [],
        "lines": lines,
        "triangles": [],
        "texts": [],
        "models": [],
    }
    return {"deletions": [], "entities": [entity]}


class FoxgloveWriter:
    """A new MCAP of Foxglove messages on ``file`` (which the caller opens and closes)."""

    def __init__(self, file: IO[bytes]) -> None:
        from mcap.writer import CompressionType, Writer

        self.writer = Writer(file, compression=CompressionType.ZSTD)
        self.writer.start(profile="", library="holo export --foxglove")
        self.schemas = {
            "cloud": self.writer.register_schema("foxglove.PointCloud", "jsonschema", POINT_CLOUD_SCHEMA),
            "skeleton": self.writer.register_schema(
                "foxglove.SceneUpdate", "jsonschema", SCENE_UPDATE_SCHEMA
            ),
            "tf": self.writer.register_schema(
                "foxglove.FrameTransform", "jsonschema", FRAME_TRANSFORM_SCHEMA
            ),
        }
        self.channels: dict[tuple[str, str], int] = {}
        self.hues: dict[str, int] = {}
        self.messages = 0
        self._last_tf_ns: int | None = None

    def _channel(self, participant: str, kind: str) -> int:
        key = (participant, kind)
        if key not in self.channels:
            topic = "/tf" if kind == "tf" else f"/holo/{safe_name(participant)}/{kind}"
            self.channels[key] = self.writer.register_channel(topic, "json", self.schemas[kind])
        return self.channels[key]

    def _write(self, channel: int, log_time_ns: int, publish_ns: int, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode()
        self.writer.add_message(channel, log_time_ns, data, publish_ns)
        self.messages += 1

    def _tf(self, log_time_ns: int) -> None:
        if self._last_tf_ns is not None and log_time_ns - self._last_tf_ns < 1_000_000_000:
            return
        self._last_tf_ns = log_time_ns
        s = 0.5**0.5  # +90 degrees about x: Holo's y-up world in a z-up map
        self._write(
            self._channel("", "tf"),
            log_time_ns,
            log_time_ns,
            {
                "timestamp": _time(log_time_ns),
                "parent_frame_id": "map",
                "child_frame_id": "world",
                "translation": {"x": 0.0, "y": 0.0, "z": 0.0},
                "rotation": {"x": s, "y": 0.0, "z": 0.0, "w": s},
            },
        )

    def add_cloud(self, cloud: PersonCloud, log_time_ns: int) -> None:
        self._tf(log_time_ns)
        t = cloud.capture_time_ns
        self._write(self._channel(cloud.participant, "cloud"), log_time_ns, t, point_cloud_message(cloud, t))

    def add_skeleton(self, packet: Packet, skeleton: Skeleton, log_time_ns: int) -> None:
        self._tf(log_time_ns)
        hue = self.hues.setdefault(packet.participant, len(self.hues))
        t = packet.capture_time_ns
        message = skeleton_message(packet.participant, skeleton, t, packet.sequence, hue)
        self._write(self._channel(packet.participant, "skeleton"), log_time_ns, t, message)

    def finish(self) -> None:
        self.writer.finish()
