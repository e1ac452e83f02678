"""``holo capture``: sources -> person clouds -> PLY files and/or the bus."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import time
from collections.abc import Iterator

from holo.capture import CaptureConfig, CapturePipeline
from holo.errors import ConfigError, HoloError
from holo.frame import PersonCloud, RGBDFrame
from holo.segment import SegmenterConfig
from holo.sources import FrameSource, SourceOptions, open_source

__all__ = ["capture_config", "open_sources", "run_capture"]

logger = logging.getLogger(__name__)


def capture_config(args: argparse.Namespace) -> CaptureConfig:
    from holo.cli import default_participant, parse_range

    near, far = parse_range(args.depth_range)
    if args.max_points is not None and args.max_points < 1:
        raise ConfigError("--max-points must be at least 1")
    return CaptureConfig(
        participant=args.participant or default_participant(),
        segmenter=SegmenterConfig(near_m=near, far_m=far, keep=args.people),
        max_points=args.max_points,
        body=getattr(args, "body", "off"),
        pose_every=getattr(args, "pose_every", 3),
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


def run_capture(args: argparse.Namespace) -> int:
    from holo.cli import source_options

    if args.count is not None and args.count < 1:
        raise ConfigError("--count must be at least 1")
    specs = args.source or ["synthetic"]
    options = source_options(args)
    config = capture_config(args)
    out_dirs: list[str] = []
    if args.out:
        for i in range(len(specs)):
            d = args.out if len(specs) == 1 else os.path.join(args.out, f"cam{i}")
            try:
                os.makedirs(d, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"--out {d}: cannot create the folder ({exc.strerror})") from None
            if not os.access(d, os.W_OK):
                raise ConfigError(f"--out {d}: the folder is not writable")
            out_dirs.append(d)
    if len(specs) > 1:
        logger.warning(
            "%d cameras without calibration: each camera's cloud is written separately", len(specs)
        )
    publisher = encoder = bus = None
    if args.publish is not None:
        from holo.bus import Bus, cloud_topic
        from holo.codec import StreamEncoder

        bus = Bus(args.publish or None)
        publisher = bus.publisher()
        from holo.cli import codec_options

        encoder = StreamEncoder(args.codec, **codec_options(args))
        topic = cloud_topic(config.participant)

    sources = open_sources(specs, options)
    pipelines = [CapturePipeline(config) for _ in sources]
    frames_done = 0
    points_total = 0
    start = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            for s in sources:
                stack.callback(s.close)
            for frames in _lockstep(sources):
                for i, (frame, pipeline) in enumerate(zip(frames, pipelines)):
                    cloud = pipeline.process(frame)
                    points_total += len(cloud)
                    if out_dirs:
                        _write(cloud, out_dirs[i], args.frame)
                    if publisher is not None and encoder is not None:
                        publisher.send(topic, encoder.encode_bytes(cloud))
                    logger.info(
                        "%s frame %d: %d points%s (segment %.1f ms)",
                        frame.serial,
                        frame.sequence,
                        len(cloud),
                        f", {cloud.status}" if cloud.status else "",
                        pipeline.last_segment_ms,
                    )
                frames_done += 1
                if args.count is not None and frames_done >= args.count:
                    break
    finally:
        if bus is not None:
            bus.close()
    elapsed = time.perf_counter() - start
    if frames_done == 0:
        raise HoloError(f"no frames came from {', '.join(specs)}")
    fps = frames_done / elapsed if elapsed > 0 else float("inf")
    where = f", PLY files in {args.out}" if args.out else ""
    print(
        f"holo capture: {frames_done} frame(s) from {len(sources)} source(s), "
        f"{points_total / (frames_done * len(sources)):.0f} points per cloud on average, {fps:.1f} frames/s{where}"
    )
    return 0


def _write(cloud: PersonCloud, folder: str, frame: str) -> None:
    from holo.ply import write_ply

    path = os.path.join(folder, f"frame_{cloud.sequence:06d}.ply")
    try:
        write_ply(path, cloud, world=frame == "world")
    except OSError as exc:
        raise HoloError(f"could not write {path}: {exc.strerror or exc}") from None
    if frame == "world" and cloud.world_from_camera is None and len(cloud):
        logger.warning(
            "frame %d: no floor found and no calibration; written in the camera frame", cloud.sequence
        )
    if cloud.skeleton is not None:
        from holo.skeleton_io import write_skeleton

        placed = cloud.in_world() if frame == "world" else cloud
        write_skeleton(folder, cloud, placed.skeleton or cloud.skeleton)
