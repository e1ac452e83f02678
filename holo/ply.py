"""Binary PLY files of coloured point clouds: writing ours, reading ours and common others.

Written files are ``binary_little_endian`` with ``float x y z`` and ``uchar red green blue`` and
``comment holo ...`` lines carrying the participant, sequence, capture time and frame, so a PLY
written by ``holo capture --out`` reads back as the same :class:`PersonCloud` (less the pixel grid).
Reading accepts ASCII and binary PLY whose first element is ``vertex`` with float or double
coordinates and optional 8-bit colour (other properties are skipped).
"""

from __future__ import annotations

import os
import re

import numpy as np

from holo.errors import SourceError
from holo.frame import PersonCloud

__all__ = ["read_ply", "write_ply"]

MAX_PLY_POINTS = 50_000_000

_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}


def write_ply(path: str, cloud: PersonCloud, *, world: bool = False) -> None:
    """Write ``cloud`` (its world-frame points if ``world`` and it is placed) as binary PLY."""
    points = cloud.points_in_world() if world else cloud.points_m
    frame = (
        "world"
        if (world and (cloud.world_from_camera is not None or cloud.frame == "world"))
        else cloud.frame
    )
    n = len(points)
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"comment holo participant={cloud.participant}\n"
        f"comment holo sequence={cloud.sequence}\n"
        f"comment holo capture_time_ns={cloud.capture_time_ns}\n"
        f"comment holo frame={frame}\n"
        f"element vertex {n}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        "end_header\n"
    ).encode("ascii")
    rec = np.empty(n, dtype=[("p", "<f4", 3), ("c", "u1", 3)])
    rec["p"] = points
    rec["c"] = cloud.colors
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(header)
        f.write(rec.tobytes())
    os.replace(tmp, path)


def read_ply(path: str) -> PersonCloud:
    """Read a point cloud PLY; raise :class:`SourceError` naming the file on anything malformed."""
    if not os.path.isfile(path):
        raise SourceError(
            f"PLY file {path} does not exist" if not os.path.exists(path) else f"{path} is not a file"
        )
    with open(path, "rb") as f:
        data = f.read()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise SourceError(f"{path} is not a PLY file (no 'ply' magic or no end_header)")
    body_start = data.index(b"\n", end) + 1
    lines = data[:end].decode("ascii", errors="replace").splitlines()
    fmt = None
    meta: dict[str, str] = {}
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    for line in lines[1:]:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "comment" and len(parts) >= 3 and parts[1] == "holo":
            key, _, value = parts[2].partition("=")
            meta[key] = value
        elif parts[0] == "element" and len(parts) == 3:
            try:
                elements.append((parts[1], int(parts[2]), []))
            except ValueError:
                raise SourceError(f"{path}: malformed element line {line!r}") from None
        elif parts[0] == "property" and elements:
            if parts[1] == "list":
                raise SourceError(f"{path}: list properties before the vertices are not supported")
            if parts[1] not in _PLY_TYPES:
                raise SourceError(f"{path}: unknown property type {parts[1]!r}")
            elements[-1][2].append((parts[2], _PLY_TYPES[parts[1]]))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise SourceError(f"{path}: unsupported PLY format {fmt!r}")
    if not elements or elements[0][0] != "vertex":
        raise SourceError(f"{path}: the first PLY element must be 'vertex'")
    _, n, props = elements[0]
    if not 0 <= n <= MAX_PLY_POINTS:
        raise SourceError(f"{path}: {n} vertices is more than Holo reads ({MAX_PLY_POINTS})")
    names = [p for p, _ in props]
    if not {"x", "y", "z"} <= set(names):
        raise SourceError(f"{path}: vertices have no x, y, z properties")
    if fmt == "ascii":
        text = data[body_start:].decode("ascii", errors="replace").split("\n")
        rows = [r.split() for r in text[:n]]
        if len(rows) < n or any(len(r) < len(props) for r in rows):
            raise SourceError(f"{path} is truncated: expected {n} vertex lines")
        try:
            table = np.array([r[: len(props)] for r in rows], dtype=np.float64).reshape(n, len(props))
        except ValueError:
            raise SourceError(f"{path}: a vertex line is not numeric") from None
        columns = {name: table[:, i] for i, name in enumerate(names)}
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(name, order + t) for name, t in props])
        need = dtype.itemsize * n
        if len(data) - body_start < need:
            raise SourceError(
                f"{path} is truncated: {n} vertices need {need} bytes, the file has {len(data) - body_start}"
            )
        rec = np.frombuffer(data, dtype=dtype, count=n, offset=body_start)
        columns = {name: rec[name] for name in names}
    points = np.stack([columns["x"], columns["y"], columns["z"]], axis=1).astype(np.float32)
    color_names = next((c for c in (("red", "green", "blue"), ("r", "g", "b")) if set(c) <= set(names)), None)
    if color_names:
        colors = np.stack([columns[c] for c in color_names], axis=1)
        if colors.dtype.kind == "f" and colors.max(initial=0) <= 1.0:
            colors = colors * 255.0
        colors = np.clip(colors, 0, 255).astype(np.uint8)
    else:
        colors = np.full((n, 3), 170, np.uint8)
    finite = np.isfinite(points).all(axis=1)
    if not finite.all():
        points, colors = points[finite], colors[finite]
    frame = meta.get("frame", "world")
    return PersonCloud(
        points_m=np.ascontiguousarray(points),
        colors=np.ascontiguousarray(colors),
        capture_time_ns=int(meta["capture_time_ns"])
        if re.fullmatch(r"-?\d+", meta.get("capture_time_ns", ""))
        else 0,
        sequence=int(meta["sequence"]) if meta.get("sequence", "").isdigit() else 0,
        participant=meta.get("participant", os.path.splitext(os.path.basename(path))[0])[:64] or "ply",
        frame="camera" if frame == "camera" else "world",
    )
