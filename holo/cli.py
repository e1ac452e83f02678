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
        "--body",
        choices=("auto", "on", "off"),
        default="auto",
        help="body tracking (MediaPipe): person masks and 33-joint skeletons from colour; needed for webcam and "
        "video sources. auto: on when colour is available (default)",
    )
    p.add_argument(
        "--pose-every",
        type=int,
        default=3,
        metavar="N",
        help="run the pose model every N frames (segmentation runs every frame; default 3: 10 Hz at 30 fps)",
    )
    p.add_argument(
        "--participant",
        default=None,
        metavar="NAME",
        help="name this participant on the bus and in recordings (default: $USER)",
    )


def add_codec_options(p: argparse.ArgumentParser) -> None:
    from holo.codec.base import CODECS

    names = "; ".join(f"{s.name}: {s.description}" for s in CODECS.values())
    p.add_argument(
        "--codec", default="holo", help=f"point-cloud codec of sent packets (default holo). {names}"
    )
    p.add_argument(
        "--geometry-mm",
        type=float,
        default=None,
        metavar="MM",
        help="holo codec: geometry precision in millimetres (default: lossless depth for a camera frame, "
        "1 mm voxels for fused clouds)",
    )
    p.add_argument(
        "--color-quality",
        type=int,
        default=None,
        metavar="Q",
        help="holo codec: colour quality 1-100 (JPEG quality; default 60, about 34 dB on real frames)",
    )


def codec_options(args: argparse.Namespace) -> dict[str, object]:
    options: dict[str, object] = {}
    if args.codec == "holo":
        if args.geometry_mm is not None:
            options["geometry_mm"] = args.geometry_mm
        if args.color_quality is not None:
            options["color_quality"] = args.color_quality
    elif args.geometry_mm is not None or args.color_quality is not None:
        raise ConfigError("--geometry-mm and --color-quality apply to the holo codec only")
    return options


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


def cmd_call(args: argparse.Namespace) -> int:
    from holo.net.call import run_call

    return run_call(args)


def cmd_signal(args: argparse.Namespace) -> int:
    from holo.net.signaling_server import run_signal

    return run_signal(args)


def cmd_view(args: argparse.Namespace) -> int:
    from viewer.app import run_view

    return run_view(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from holo.demo import run_demo

    return run_demo(args)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from calibration.cli import run_calibrate

    return run_calibrate(args)


def cmd_bench(args: argparse.Namespace) -> int:
    from holo.bench_codec import run_cli

    return run_cli(args)


def cmd_bus(args: argparse.Namespace) -> int:
    from holo.bus import resolve_bus, run_forwarder

    print(f"holo bus: forwarding on {resolve_bus(args.bus)} (Ctrl-C stops)", flush=True)
    run_forwarder(args.bus)
    return 0


def build_parser() -> argparse.ArgumentParser:
    # -v/-q work before or after the command; SUPPRESS keeps the command's copy from resetting them.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output (-vv for debug)"
    )
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only warnings and errors"
    )
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
    add_codec_options(p)
    from holo.capture_cli import add_calibration_arguments

    add_calibration_arguments(p)
    p.set_defaults(func=cmd_capture)

    p = sub.add_parser(
        "call",
        help="call someone: send your person cloud and voice, receive theirs (WebRTC)",
        description="Join ROOM on the signaling server and call the other participant: capture, encode and send the "
        "local person over a WebRTC data channel with voice, receive theirs and publish it on the local bus "
        "(holo/<participant>/cloud) for the viewer and recorder. Stats go to the log and holo/<you>/stats. "
        "Besides the capture sources below, --source replay:FILE.mcap[:PARTICIPANT] sends a recorded "
        "participant's packets as recorded (restamped, renamed to you, looped).",
    )
    from holo.net.call import add_call_arguments

    add_call_arguments(p)
    p.set_defaults(func=cmd_call)

    p = sub.add_parser(
        "view",
        help="see the participants in 3D: a window, offscreen snapshots, or a headset",
        description="Show every participant on the local bus (or --input files) standing in one shared space.",
    )
    from viewer.app import add_view_arguments

    add_view_arguments(p)
    p.set_defaults(func=cmd_view)

    p = sub.add_parser(
        "signal", help="run the signaling server that introduces callers (rooms with secret tokens)"
    )
    from holo.net.signaling_server import add_signal_arguments

    add_signal_arguments(p)
    p.set_defaults(func=cmd_signal)

    p = sub.add_parser(
        "demo",
        help="a complete 3D call on this machine: two participants, the viewer, a recording",
        description="Start a signaling server, two calls over WebRTC on loopback (synthetic performers, or a "
        "webcam for the second), a recorder and the viewer. Ctrl-C ends everything.",
    )
    from holo.demo import add_demo_arguments

    add_demo_arguments(p)
    p.set_defaults(func=cmd_demo)

    from holo.record.cli import COMMANDS as RECORD_COMMANDS

    for name, (help_text, add_args, run) in RECORD_COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(func=run)

    from calibration.cli import __doc__ as calibrate_doc
    from calibration.cli import add_calibrate_arguments

    p = sub.add_parser(
        "calibrate",
        help="print a ChArUco board; calibrate several cameras into one floor-aligned world",
        description=calibrate_doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_calibrate_arguments(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("bench", help="measure Holo's parts (codec) on real data")
    bench = p.add_subparsers(dest="bench", metavar="WHAT", required=True)
    from holo.bench_codec import __doc__ as bench_doc
    from holo.bench_codec import add_arguments as add_bench_codec

    b = bench.add_parser(
        "codec",
        help="all codecs on the same clouds: bits/point, speed, error; JSON and a plot",
        description=bench_doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bench_codec(b)
    b.set_defaults(func=cmd_bench)

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
    setup_logging(getattr(args, "verbose", 0), getattr(args, "quiet", False))
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
