"""``rgbd:DIR`` — a folder of colour + 16-bit depth images with an intrinsics file.

Layouts understood (depth must already be registered to colour, as TUM RGB-D, Redwood and
Kinect v1 "registered" captures are):

- one folder of pairs named ``<key>_color|rgb.*`` and ``<key>_depth[_mm].*`` (PNG, TIFF, ...), e.g.
  ``five_people_color.png`` + ``five_people_depth_mm.png``, or PCL's ``frame_<time>_rgb.tiff`` +
  ``frame_<time>_depth.tiff``;
- sub-folders ``color/`` (or ``rgb/``, ``image/``) and ``depth/`` holding files with matching names,
  or, TUM style, ``rgb.txt`` and ``depth.txt`` lists matched by nearest timestamp (within 20 ms);
- depth-only folders (no colour files) give frames with no colour.

Intrinsics, first found wins: ``--intrinsics`` on the command line; ``intrinsics.json``
(``{"fx", "fy", "cx", "cy"[, "depth_unit_m"]}``); Open3D/Redwood ``camera_intrinsic.json``
(``{"width", "height", "intrinsic_matrix": [9 values, column-major]}``); a per-frame PCL/OpenNI
``<key>.xml`` (``focal_length_x`` ... ``z_multiplication_factor``). Depth units default to
millimetres (0.2 mm for TUM, whose ``depth.txt`` marks it).

Timestamps come from file names when they hold one (``1305031102.175304`` TUM seconds, or
``20121214T142255.814212``); otherwise frames are spaced at ``--fps`` from the first file's time.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import logging
import os
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from holo.errors import HoloError, IntrinsicsError, SourceError
from holo.frame import Intrinsics, RGBDFrame, depth_from_units
from holo.imageio import read_color, read_depth_mm
from holo.sources.base import FrameSource, SourceOptions

__all__ = ["RGBDFolderSource", "open_rgbd"]

logger = logging.getLogger(__name__)

_IMAGE_EXT = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".pgm", ".ppm", ".bmp")
_COLOR_TAGS = {"color", "colour", "rgb", "image", "img"}
_DEPTH_TAGS = {"depth"}
_DROP_TAGS = _COLOR_TAGS | _DEPTH_TAGS | {"mm", "registered"}


@dataclass(frozen=True, slots=True)
class _Pair:
    key: str
    color_path: str | None
    depth_path: str
    time_ns: int | None


def _key(stem: str) -> tuple[str, str | None]:
    tokens = re.split(r"[_\-]", stem)
    kind = None
    if any(t.lower() in _DEPTH_TAGS for t in tokens):
        kind = "depth"
    elif any(t.lower() in _COLOR_TAGS for t in tokens):
        kind = "color"
    key = "_".join(t for t in tokens if t.lower() not in _DROP_TAGS)
    return key, kind


def _time_from_name(name: str) -> int | None:
    m = re.search(r"(\d{8}T\d{6}(?:\.\d+)?)", name)
    if m:
        text = m.group(1)
        fmt = "%Y%m%dT%H%M%S.%f" if "." in text else "%Y%m%dT%H%M%S"
        stamp = dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC)
        return int(stamp.timestamp()) * 1_000_000_000 + stamp.microsecond * 1000
    m = re.fullmatch(r"(\d{9,10}\.\d+)", name)
    if m:
        return round(float(m.group(1)) * 1e9)
    return None


def _images(folder: str) -> list[str]:
    return sorted(p for p in glob.glob(os.path.join(folder, "*")) if p.lower().endswith(_IMAGE_EXT))


def _tum_list(path: str) -> list[tuple[float, str]]:
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and not line.startswith("#"):
                try:
                    rows.append((float(parts[0]), parts[1]))
                except ValueError:
                    continue
    return rows


def _find_pairs(folder: str) -> tuple[list[_Pair], float]:
    """Frame pairs in ``folder`` and the depth unit their layout implies."""
    rgb_txt, depth_txt = os.path.join(folder, "rgb.txt"), os.path.join(folder, "depth.txt")
    if os.path.exists(depth_txt):  # TUM RGB-D: depth in 1/5000 m, lists matched by timestamp
        depths = _tum_list(depth_txt)
        tum_colors = _tum_list(rgb_txt) if os.path.exists(rgb_txt) else []
        color_times = np.array([t for t, _ in tum_colors])
        pairs = []
        for t, name in depths:
            color = None
            if len(color_times):
                i = int(np.argmin(np.abs(color_times - t)))
                if abs(color_times[i] - t) <= 0.02:
                    color = os.path.join(folder, tum_colors[i][1])
            pairs.append(_Pair(str(t), color, os.path.join(folder, name), round(t * 1e9)))
        return pairs, 1.0 / 5000.0
    for color_dir in ("color", "rgb", "image"):
        if os.path.isdir(os.path.join(folder, color_dir)) and os.path.isdir(os.path.join(folder, "depth")):
            named = {
                os.path.splitext(os.path.basename(p))[0]: p for p in _images(os.path.join(folder, color_dir))
            }
            depth_files = _images(os.path.join(folder, "depth"))
            stems = [os.path.splitext(os.path.basename(p))[0] for p in depth_files]
            by_order = len(named) == len(depth_files) and not set(named) & set(stems)
            color_list = sorted(named.values())
            found = [
                _Pair(stem, color_list[i] if by_order else named.get(stem), d, _time_from_name(stem))
                for i, (stem, d) in enumerate(zip(stems, depth_files))
            ]
            return found, 0.001
    if os.path.isdir(os.path.join(folder, "depth")):
        return [
            _Pair(os.path.basename(d), None, d, None) for d in _images(os.path.join(folder, "depth"))
        ], 0.001
    colors_by_key: dict[str, str] = {}
    depths_by_key: dict[str, str] = {}
    for path in _images(folder):
        key, kind = _key(os.path.splitext(os.path.basename(path))[0])
        if kind == "depth":
            depths_by_key[key] = path
        elif kind == "color":
            colors_by_key[key] = path
    return [
        _Pair(k, colors_by_key.get(k), d, _time_from_name(k)) for k, d in sorted(depths_by_key.items())
    ], 0.001


def _intrinsics_from_files(
    folder: str, pair: _Pair, width: int, height: int
) -> tuple[Intrinsics, float | None] | None:
    path = os.path.join(folder, "intrinsics.json")
    try:
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            data = {"width": width, "height": height} | data
            return Intrinsics.from_dict(data), data.get("depth_unit_m")
        path = os.path.join(folder, "camera_intrinsic.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            m = np.asarray(data["intrinsic_matrix"], float).reshape(3, 3).T  # column-major in the file
            w, h = int(data.get("width", width)), int(data.get("height", height))
            k = Intrinsics(width=w, height=h, fx=m[0, 0], fy=m[1, 1], cx=m[0, 2], cy=m[1, 2])
            return (k if (w, h) == (width, height) else k.scaled(width, height)), None
        path = os.path.join(os.path.dirname(pair.depth_path), pair.key + ".xml")
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                text = re.sub(r"<\?xml[^>]*\?>", "", f.read())
            root = ET.fromstring(f"<root>{text}</root>")  # PCL writes <rgb> and <depth> side by side
            node = root.find("depth")
            if node is None:
                node = root

            def val(tag: str) -> float:
                found = node.find(tag)
                if found is None or found.text is None:
                    raise SourceError(f"{path}: no <{tag}> in the intrinsics file")
                return float(found.text)

            k = Intrinsics(
                width=width,
                height=height,
                fx=val("focal_length_x"),
                fy=val("focal_length_y"),
                cx=val("principal_point_x"),
                cy=val("principal_point_y"),
            )
            unit_node = node.find("z_multiplication_factor")
            unit = float(unit_node.text) if unit_node is not None and unit_node.text else None
            return k, unit
    except HoloError as exc:
        if isinstance(exc, IntrinsicsError):
            raise IntrinsicsError(f"{path}: {exc}") from None
        raise
    except (OSError, ValueError, KeyError, TypeError, ET.ParseError) as exc:
        raise SourceError(f"intrinsics file {path} is not readable: {exc}") from None
    return None


class RGBDFolderSource(FrameSource):
    kind = "rgbd"

    def __init__(self, spec: str, options: SourceOptions, folder: str) -> None:
        super().__init__(spec, options)
        self.folder = folder
        if not os.path.isdir(folder):
            raise SourceError(
                f"rgbd source: {folder} is not a folder"
                if os.path.exists(folder)
                else f"rgbd source: {folder} does not exist"
            )
        self.pairs, self.depth_unit_m = _find_pairs(folder)
        if not self.pairs:
            raise SourceError(
                f"rgbd source: no depth images in {folder} (expected *_depth.png|tiff beside *_color|rgb images, "
                "depth/ and color/ folders, or TUM's depth.txt)"
            )

    @property
    def serial(self) -> str:
        return os.path.basename(os.path.normpath(self.folder)) or "rgbd"

    def _frames(self) -> Iterator[RGBDFrame]:
        intrinsics: Intrinsics | None = None
        unit = self.depth_unit_m
        base_ns = int(os.path.getmtime(self.pairs[0].depth_path) * 1e9)
        sequence = 0
        fps = self.options.fps if self.options.fps > 0 else 30.0
        while True:
            start = time.monotonic()
            first_t: int | None = None
            for i, pair in enumerate(self.pairs):
                depth_mm = read_depth_mm(pair.depth_path)
                h, w = depth_mm.shape
                color = read_color(pair.color_path) if pair.color_path else None
                if color is not None and color.shape[:2] != (h, w):
                    raise SourceError(
                        f"rgbd source: colour {pair.color_path} is {color.shape[1]}×{color.shape[0]} but depth "
                        f"{pair.depth_path} is {w}×{h}; depth must be registered to colour at the same size"
                    )
                if intrinsics is None or (intrinsics.width, intrinsics.height) != (w, h):
                    intrinsics = self.options.intrinsics_for(w, h, f"rgbd source {self.folder}")
                    if intrinsics is None:
                        found = _intrinsics_from_files(self.folder, pair, w, h)
                        if found is None:
                            raise SourceError(
                                f"rgbd source: no intrinsics for {self.folder} (looked for intrinsics.json, "
                                f"camera_intrinsic.json and {pair.key}.xml); pass --intrinsics FX,FY,CX,CY"
                            )
                        intrinsics, file_unit = found
                        if file_unit:
                            unit = float(file_unit)
                t_ns = pair.time_ns if pair.time_ns is not None else base_ns + round(i * 1e9 / fps)
                if self.options.realtime:
                    first_t = t_ns if first_t is None else first_t
                    delay = start + (t_ns - first_t) / 1e9 - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                yield RGBDFrame(
                    depth_m=depth_from_units(depth_mm, unit),
                    color=color,
                    intrinsics=intrinsics,
                    capture_time_ns=t_ns,
                    sequence=sequence,
                    serial=self.serial,
                    depth_unit_m=unit,
                )
                sequence += 1
            if not self.options.loop:
                return


def open_rgbd(arg: str | None, spec: str, options: SourceOptions) -> RGBDFolderSource:
    if not arg:
        raise SourceError("rgbd source needs a folder: --source rgbd:DIR")
    return RGBDFolderSource(spec, options, arg)
