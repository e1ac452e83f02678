"""``holo record | info | play | export``: recording sessions to MCAP, and using the recordings.

Each command is a pair ``add_<command>_arguments(parser)`` / ``run_<command>(args) -> int`` for
``holo.cli`` to mount; :func:`main` runs them on their own (``python -m holo.record.cli record
FILE.mcap``). Errors are :class:`~holo.errors.HoloError` sentences (exit status 2 from ``main``).
``holo record`` stops on Ctrl-C or SIGTERM, finishes the file and exits 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType

from holo.cli import setup_logging
from holo.errors import HoloError

__all__ = [
    "COMMANDS",
    "add_export_arguments",
    "add_info_arguments",
    "add_play_arguments",
    "add_record_arguments",
    "main",
    "run_export",
    "run_info",
    "run_play",
    "run_record",
]

logger = logging.getLogger(__name__)

_BUS_HELP = "bus address (default $HOLO_BUS or tcp://127.0.0.1:7755)"


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 s or more, got {text}")
    return value


# -- record -------------------------------------------------------------------------------------------


def add_record_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE.mcap", help="the recording to create")
    p.add_argument("--bus", default=None, metavar="ADDR", help=_BUS_HELP)
    p.add_argument("--seconds", type=_seconds, default=None, metavar="S", help="stop after S seconds")
    p.add_argument("--note", default="", metavar="TEXT", help="free text stored in the session metadata")
    p.add_argument(
        "--calibration", default=None, metavar="FILE", help="calibration JSON to attach to the recording"
    )
    p.add_argument(
        "--topic",
        action="append",
        default=None,
        metavar="PREFIX",
        help="record only topics starting with PREFIX (repeatable; default: every holo/ topic)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    p.add_argument(
        "--compression",
        choices=("zstd", "lz4", "none"),
        default="zstd",
        help="chunk compression (default zstd)",
    )


def run_record(args: argparse.Namespace) -> int:
    from holo.record.writer import Recorder

    recorder = Recorder(
        args.file,
        args.bus,
        note=args.note,
        seconds=args.seconds or None,
        calibration=args.calibration,
        topics=tuple(args.topic or ("holo/",)),
        overwrite=args.overwrite,
        compression=args.compression,
    )
    recorder.start()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    limit = f" for {args.seconds:g} s" if args.seconds else " (Ctrl-C stops)"
    print(f"holo record: recording bus {recorder.address} into {args.file}{limit}", flush=True)
    try:
        last_report = time.monotonic()
        while not stop.is_set() and not recorder.wait(0.2):
            if time.monotonic() - last_report >= 10:
                last_report = time.monotonic()
                logger.info(
                    "%.0f s recorded: %d messages, %.1f MB",
                    recorder.elapsed_s,
                    recorder.messages,
                    recorder.bytes_written / 1e6,
                )
        report = recorder.stop("it was stopped (Ctrl-C or SIGTERM)" if stop.is_set() else "it was stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    people = ", ".join(f"{n} ({report.frames[n]} frames)" for n in report.participants) or "no participants"
    print(
        f"holo record: {args.file}: {report.duration_s:.1f} s, {report.messages} messages from {people}; "
        f"{report.bytes_written / 1e6:.1f} MB ({report.bytes_per_minute / 1e6:.1f} MB per minute)",
        flush=True,
    )
    return 0


# -- info ---------------------------------------------------------------------------------------------


def add_info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE.mcap", help="a recording")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def run_info(args: argparse.Namespace) -> int:
    from holo.record.reader import format_summary, summarize

    summary = summarize(args.file)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2, default=str))
    else:
        print(format_summary(summary))
    return 0


# -- play ---------------------------------------------------------------------------------------------


def add_play_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE.mcap", help="the recording to replay")
    p.add_argument("--bus", default=None, metavar="ADDR", help=_BUS_HELP)
    p.add_argument("--speed", type=float, default=1.0, metavar="X", help="playback speed (default 1)")
    p.add_argument("--loop", action="store_true", help="start over at the end, until stopped")
    p.add_argument("--from", dest="from_s", type=_seconds, default=None, metavar="T", help="start T s in")
    p.add_argument("--to", dest="to_s", type=_seconds, default=None, metavar="T", help="stop T s in")
    p.add_argument(
        "--topic",
        action="append",
        default=None,
        metavar="PREFIX",
        help="play only topics starting with PREFIX (repeatable; e.g. holo/ana/)",
    )
    p.add_argument(
        "--restamp",
        action="store_true",
        help="give clouds the current time and fresh sequence numbers (default: the recorded bytes)",
    )


def run_play(args: argparse.Namespace) -> int:
    from holo.bus import resolve_bus
    from holo.record.play import play
    from holo.record.reader import RecordingReader

    RecordingReader(args.file, recover=True).close()  # a clear error before touching the bus
    loop = " in a loop" if args.loop else ""
    print(f"holo play: {args.file} onto bus {resolve_bus(args.bus)} at {args.speed:g}x{loop}", flush=True)
    report = play(
        args.file,
        bus_address=args.bus,
        speed=args.speed,
        loop=args.loop,
        from_s=args.from_s,
        to_s=args.to_s,
        topics=args.topic,
        restamp=args.restamp,
    )
    for reason in report.damage:
        print(f"holo play: warning: {args.file} is damaged: {reason}", file=sys.stderr)
    extra = f", {report.reanchors} stall(s) ({report.shifted_s:.2f} s)" if report.reanchors else ""
    dropped = f", {report.dropped} dropped by the bus" if report.dropped else ""
    print(
        f"holo play: played {report.messages} messages in {report.played_s:.1f} s "
        f"({report.passes} pass(es)){extra}{dropped}",
        flush=True,
    )
    return 0


# -- export -------------------------------------------------------------------------------------------


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE.mcap", help="the recording to export")
    p.add_argument("--ply", metavar="DIR", help="one PLY per frame per participant, world frame")
    p.add_argument("--skeleton-csv", metavar="FILE", help="skeleton joints: one row per frame and joint")
    p.add_argument("--audio", metavar="DIR", help="one WAV per participant")
    p.add_argument("--foxglove", metavar="FILE.mcap", help="clouds and skeletons in Foxglove's schemas")
    p.add_argument(
        "--participant",
        action="append",
        default=None,
        metavar="NAME",
        help="only this participant (repeatable)",
    )
    p.add_argument("--from", dest="from_s", type=_seconds, default=None, metavar="T", help="start T s in")
    p.add_argument("--to", dest="to_s", type=_seconds, default=None, metavar="T", help="stop T s in")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")


def run_export(args: argparse.Namespace) -> int:
    from holo.record.export import export

    report = export(
        args.file,
        ply_dir=args.ply,
        skeleton_csv=args.skeleton_csv,
        audio_dir=args.audio,
        foxglove=args.foxglove,
        participants=tuple(args.participant) if args.participant else None,
        from_s=args.from_s,
        to_s=args.to_s,
        overwrite=args.overwrite,
    )
    for reason in report.damage:
        print(f"holo export: warning: {args.file} is damaged: {reason}", file=sys.stderr)
    if args.ply:
        print(f"holo export: {report.ply_files} PLY file(s) in {args.ply}")
    if args.skeleton_csv:
        print(
            f"holo export: {report.skeleton_rows} rows ({report.skeleton_frames} skeletons) in {args.skeleton_csv}"
        )
    if args.audio:
        tracks = ", ".join(f"{path} ({seconds:.1f} s)" for path, seconds in report.wav_files.items())
        print(f"holo export: audio: {tracks or 'the recording holds no audio'}")
    if args.foxglove:
        print(f"holo export: {report.foxglove_messages} Foxglove messages in {args.foxglove}")
    if report.skipped_packets:
        print(f"holo export: skipped {report.skipped_packets} damaged message(s)", file=sys.stderr)
    return 0


COMMANDS: dict[
    str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {
    "record": ("record everything on the bus into an MCAP file", add_record_arguments, run_record),
    "info": (
        "summarise a recording (duration, participants, frames, drops, latency)",
        add_info_arguments,
        run_info,
    ),
    "play": ("replay a recording onto the bus with its recorded timing", add_play_arguments, run_play),
    "export": (
        "export a recording to PLY, skeleton CSV, WAV or Foxglove MCAP",
        add_export_arguments,
        run_export,
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="holo", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, add, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add(p)
        p.set_defaults(func=run)
    args = parser.parse_args(argv)
    setup_logging(args.verbose, quiet=False)
    try:
        return int(args.func(args))
    except HoloError as exc:
        print(f"holo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"holo {args.command}: stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
