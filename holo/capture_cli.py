"""``holo capture``: sources -> person clouds -> PLY files and/or the bus.

With ``--calibration FILE`` (written by ``holo calibrate cameras``) each source's camera is looked
up in the file by its serial — a serial the file does not know is an error listing the ones it
does. One camera: its ``world_from_camera`` comes from the file instead of the floor it sees (the
cloud stays in the camera frame, organised, placed by the file). Several cameras: each camera's
person cloud is placed in the world and the clouds are fused into one world-frame cloud per instant,
points closer than ``--voxel-mm`` (default 5 mm) merged (see :mod:`calibration.fuse`); it is written
as one PLY per frame in ``--out`` and published as one participant.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from holo.capture import CaptureConfig, CapturePipeline
from holo.errors import ConfigError, HoloError
from holo.frame import PersonCloud, RGBDFrame
from holo.segment import SegmenterConfig
from holo.sources import FrameSource, SourceOptions, open_source

if TYPE_CHECKING:
    from calibration.calibfile import CalibrationFile

__all__ = ["add_calibration_arguments", "capture_config", "open_sources", "run_capture"]

logger = logging.getLogger(__name__)


def add_calibration_arguments(p: argparse.ArgumentParser) -> None:
    """``holo capture``'s calibration options (--calibration, --voxel-mm)."""
    p.add_argument(
        "--calibration",
        metavar="FILE",
        default=None,
        help="calibration.json from 'holo calibrate cameras': places each camera (by serial) in the world; "
        "several sources are fused into one world-frame cloud",
    )
    p.add_argument(
        "--voxel-mm",
        type=float,
        default=None,
        metavar="MM",
        help="with --calibration and several sources: merge fused points closer than MM millimetres (default 5)",
    )


def capture_config(args: argparse.Namespace) -> CaptureConfig:
    from holo.cli import default_participant, parse_range

    near, far = parse_range(args.depth_range)
    if args.max_points is not None and args.max_points < 1:
        raise ConfigError("--max-points must be at least 1")
    return CaptureConfig(
        participant=args.participant or default_participant(),
        segmenter=SegmenterConfig(near_m=near, far_m=far, keep=args.people),
        max_points=args.max_points,
        body=args.body,
        pose_every=args.pose_every,
    )


def open_sources(specs: list[str], options: SourceOptions) -> list[FrameSource]:
    sources: list[FrameSource] = []
    try:
        for spec in specs:
            sources.append(open_source(spec, options))
    except BaseException:
        for s in sources:
            s.close()
        raise
    return sources


def _lockstep(sources: list[FrameSource]) -> Iterator[list[RGBDFrame]]:
    iterators = [iter(s) for s in sources]
    while True:
        frames = []
        for it in iterators:
            frame = next(it, None)
            if frame is None:
                return
            frames.append(frame)
        yield frames


def _load_calibration(args: argparse.Namespace) -> CalibrationFile | None:
    """The --calibration file, read and checked before any camera is opened (None without one)."""
    voxel_mm = args.voxel_mm
    if voxel_mm is not None and not 0.0 <= voxel_mm <= 100.0:
        raise ConfigError(f"--voxel-mm must be 0 to 100 millimetres, got {voxel_mm:g}")
    path = args.calibration
    if not path:
        if voxel_mm is not None:
            raise ConfigError("--voxel-mm merges fused cameras and needs --calibration")
        return None
    from calibration.calibfile import load_calibration

    return load_calibration(path)


def _placements(
    args: argparse.Namespace, calibration: CalibrationFile | None, sources: list[FrameSource]
) -> tuple[list[np.ndarray | None], float | None]:
    """Each source's ``world_from_camera`` from the calibration (None without), and the fusion voxel (m)."""
    if calibration is None:
        return [None] * len(sources), None
    from calibration.fuse import DEFAULT_VOXEL_M, match_cameras

    cameras = match_cameras(calibration, [s.serial for s in sources])
    for source, camera in zip(sources, cameras):
        logger.info(
            "%s: placed by %s (calibrated %s)",
            source.spec,
            args.calibration,
            camera.date or "at an unknown date",
        )
    voxel_mm = args.voxel_mm
    voxel_m = DEFAULT_VOXEL_M if voxel_mm is None else voxel_mm / 1000.0
    return [c.world_from_camera for c in cameras], (voxel_m if len(sources) > 1 else None)


def run_capture(args: argparse.Namespace) -> int:
    from calibration.fuse import fuse_clouds
    from holo.cli import source_options

    if args.count is not None and args.count < 1:
        raise ConfigError("--count must be at least 1")
    specs = args.source or ["synthetic"]
    options = source_options(args)
    config = capture_config(args)
    calibration = _load_calibration(args)
    fused = calibration is not None and len(specs) > 1
    out_dirs: list[str] = []
    if args.out:
        for i in range(1 if fused else len(specs)):
            d = args.out if len(specs) == 1 or fused else os.path.join(args.out, f"cam{i}")
            try:
                os.makedirs(d, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"--out {d}: cannot create the folder ({exc.strerror})") from None
            if not os.access(d, os.W_OK):
                raise ConfigError(f"--out {d}: the folder is not writable")
            out_dirs.append(d)
    if len(specs) > 1 and not fused:
        logger.warning(
            "%d cameras without calibration: each camera's cloud is written separately", len(specs)
        )
    frames_done = 0
    points_total = 0
    clouds_total = 0
    # Everything opened from here on is closed on the way out, also when a later step fails.
    with contextlib.ExitStack() as stack:
        sources = open_sources(specs, options)
        for s in sources:
            stack.callback(s.close)
        placements, voxel_m = _placements(args, calibration, sources)
        publisher = encoder = None
        if args.publish is not None:
            from holo.bus import Bus, cloud_topic
            from holo.cli import codec_options
            from holo.codec import StreamEncoder

            bus = Bus(args.publish or None)
            stack.callback(bus.close)
            publisher = bus.publisher()
            encoder = StreamEncoder(args.codec, **codec_options(args))
            topic = cloud_topic(config.participant)
        pipelines = []
        for m in placements:
            pipelines.append(CapturePipeline(config, world_from_camera=m))
            stack.callback(pipelines[-1].close)
        start = time.perf_counter()
        for frames in _lockstep(sources):
            clouds = []
            for frame, pipeline in zip(frames, pipelines):
                cloud = pipeline.process(frame)
                logger.info(
                    "%s frame %d: %d points%s (segment %.1f ms)",
                    frame.serial,
                    frame.sequence,
                    len(cloud),
                    f", {cloud.status}" if cloud.status else "",
                    pipeline.last_segment_ms,
                )
                clouds.append(cloud)
            if voxel_m is not None:
                clouds = [fuse_clouds(clouds, voxel_m=voxel_m).with_(sequence=frames_done)]
                logger.info("fused frame %d: %d points", frames_done, len(clouds[0]))
            for i, cloud in enumerate(clouds):
                points_total += len(cloud)
                clouds_total += 1
                if out_dirs:
                    _write(cloud, out_dirs[i], args.frame)
                if publisher is not None and encoder is not None:
                    publisher.send(topic, encoder.encode_bytes(cloud))
            frames_done += 1
            if args.count is not None and frames_done >= args.count:
                break
    elapsed = time.perf_counter() - start
    if frames_done == 0:
        raise HoloError(f"no frames came from {', '.join(specs)}")
    fps = frames_done / elapsed if elapsed > 0 else float("inf")
    where = f", PLY files in {args.out}" if args.out else ""
    what = f"fused into one world-frame cloud ({voxel_m * 1000:g} mm voxels)" if voxel_m is not None else ""
    print(
        f"holo capture: {frames_done} frame(s) from {len(sources)} source(s){', ' + what if what else ''}, "
        f"{points_total / clouds_total:.0f} points per cloud on average, {fps:.1f} frames/s{where}"
    )
    return 0


def _write(cloud: PersonCloud, folder: str, frame: str) -> None:
    from holo.ply import write_ply

    path = os.path.join(folder, f"frame_{cloud.sequence:06d}.ply")
    placed = cloud.in_world() if frame == "world" else cloud  # itself when not placed
    try:
        write_ply(path, placed)
    except OSError as exc:
        raise HoloError(f"could not write {path}: {exc.strerror or exc}") from None
    if frame == "world" and placed.frame != "world" and len(cloud):
        logger.warning(
            "frame %d: no floor found and no calibration; written in the camera frame", cloud.sequence
        )
    if placed.skeleton is not None:
        from holo.skeleton_io import write_skeleton

        write_skeleton(folder, cloud, placed.skeleton)
