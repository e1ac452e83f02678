"""Holo: holographic telepresence — capture, call, view, record.

Run ``holo COMMAND --help`` for each command's options. Errors on bad input are one sentence on
stderr and exit status 2; Ctrl-C stops any command cleanly (status 130).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from holo.errors import ConfigError, HoloError, IntrinsicsError
from holo.frame import Intrinsics
from holo.sources.base import SourceOptions

__all__ = ["main"]

logger = logging.getLogger("holo")


def parse_intrinsics(text: str) -> Intrinsics | tuple[float, float, float, float]:
    """``FX,FY,CX,CY`` (pixels; the size comes from the images) or a JSON file with width/height too."""
    if os.path.isfile(text):
        import json

        try:
            with open(text, encoding="utf-8") as f:
                return Intrinsics.from_dict(json.load(f))
        except (OSError, ValueError) as exc:
            raise IntrinsicsError(f"intrinsics file {text} is not readable JSON: {exc}") from None
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise IntrinsicsError(f"--intrinsics must be FX,FY,CX,CY in pixels or a JSON file, got {text!r}")
    return values  # type: ignore[return-value]


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"size must be WIDTHxHEIGHT in pixels, got {text!r}") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise ConfigError(f"size {w}x{h} is outside 16..8192 pixels per side")
    return w, h


def parse_range(text: str) -> tuple[float, float]:
    try:
        near, far = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--depth-range must be NEAR,FAR in metres, got {text!r}") from None
    return near, far


def add_source_options(p: argparse.ArgumentParser, *, multiple: bool = True) -> None:
    from holo.sources import describe_sources

    kinds = "; ".join(describe_sources())
    p.add_argument(
        "--source",
        action="append" if multiple else "store",
        metavar="SRC",
        help=f"where frames come from (repeat for several cameras; default: synthetic). Kinds: {kinds}",
    )
    p.add_argument(
        "--intrinsics",
        metavar="FX,FY,CX,CY|FILE",
        help="camera intrinsics in pixels, overriding what the source reads or assumes",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic performer (default 0)")
    p.add_argument(
        "--size",
        default="640x480",
        metavar="WxH",
        help="frame size in pixels for sources that can choose it (synthetic, live cameras; default 640x480)",
    )
    p.add_argument(
        "--fps",
        type=float,
        default=0.0,
        metavar="F",
        help="pace the source at F frames per second (default: a live camera's own rate; files and synthetic as fast as possible)",
    )
    p.add_argument("--loop", action="store_true", help="start recordings over at their end")
    p.add_argument(
        "--depth-range",
        default="0.3,4.5",
        metavar="NEAR,FAR",
        help="working volume: keep depth between NEAR and FAR metres from the camera (default 0.3,4.5)",
    )
    p.add_argument(
        "--people",
        choices=("all", "main"),
        default="all",
        help="keep every person in view, or only the main one (nearest and most central; default all)",
    )
    p.add_argument(
        "--max-points",
        type=int,
        default=None,
        metavar="N",
        help="keep at most N points per cloud (an even subsample of pixels; default: all)",
    )
    p.add_argument(
        "--participant",
        default=None,
        metavar="NAME",
        help="name this participant on the bus and in recordings (default: $USER)",
    )


def source_options(args: argparse.Namespace) -> SourceOptions:
    size = parse_size(args.size)
    intrinsics = parse_intrinsics(args.intrinsics) if args.intrinsics else None
    return SourceOptions(
        intrinsics=intrinsics,
        seed=args.seed,
        fps=args.fps if args.fps > 0 else 30.0,
        loop=args.loop,
        realtime=args.fps > 0,
        size=size,
    )


def default_participant() -> str:
    name = os.environ.get("USER") or os.environ.get("USERNAME") or "me"
    return "".join(c for c in name if c.isalnum() or c in "-_.")[:64] or "me"


# -- commands ----------------------------------------------------------------------------------------


def cmd_capture(args: argparse.Namespace) -> int:
    from holo.capture_cli import run_capture

    return run_capture(args)


def cmd_bus(args: argparse.Namespace) -> int:
    from holo.bus import resolve_bus, run_forwarder

    print(f"holo bus: forwarding on {resolve_bus(args.bus)} (Ctrl-C stops)", flush=True)
    run_forwarder(args.bus)
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    common.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser = argparse.ArgumentParser(
        prog="holo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add = sub.add_parser

    def add_parser(name: str, **kwargs: object) -> argparse.ArgumentParser:
        return _add(name, parents=[common], **kwargs)  # type: ignore[arg-type]

    sub.add_parser = add_parser  # type: ignore[method-assign]

    p = sub.add_parser(
        "capture",
        help="read frames from cameras or recordings, extract the person, write PLY files and/or publish",
        description="Read frames, build person point clouds (metres, camera frame unless --frame world), write one "
        "binary PLY per frame to --out and/or publish packets on the local bus as holo/<participant>/cloud.",
    )
    add_source_options(p)
    p.add_argument(
        "--count",
        type=int,
        default=None,
        metavar="N",
        help="stop after N frames per source (default: the whole recording; forever for live/synthetic)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="write one binary PLY per frame into DIR (per-camera sub-folders for several sources)",
    )
    p.add_argument(
        "--frame",
        choices=("camera", "world"),
        default="camera",
        help="coordinates of written PLY points: the camera's (x right, y down, z forward), or the world's "
        "(floor at y=0, +y up; from --calibration or the floor the camera sees). Default camera",
    )
    p.add_argument(
        "--publish",
        nargs="?",
        const="",
        default=None,
        metavar="ADDR",
        help="publish each cloud on the local bus (default address: $HOLO_BUS or tcp://127.0.0.1:7755)",
    )
    p.add_argument("--codec", default="raw", help="codec of published packets (default raw)")
    p.set_defaults(func=cmd_capture)

    p = sub.add_parser(
        "bus", help="run the local bus forwarder in the foreground (normally started automatically)"
    )
    p.add_argument(
        "--bus", default=None, metavar="ADDR", help="bus address (default $HOLO_BUS or tcp://127.0.0.1:7755)"
    )
    p.set_defaults(func=cmd_bus)
    return parser


def setup_logging(verbose: int, quiet: bool) -> None:
    level = (
        logging.WARNING
        if quiet
        else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    )
    logging.basicConfig(
        level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s", datefmt="%H:%M:%S"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except HoloError as exc:
        print(f"holo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"holo {args.command}: stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
