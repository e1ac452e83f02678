"""``holo calibrate``: print a ChArUco board; calibrate several cameras into one floor-aligned world.

``holo calibrate board [--out FILE.pdf|png] [--size A4|A3]`` writes the printable board with its
true square size on it. ``holo calibrate cameras --source SRC --source SRC ... [--out
calibration.json]`` finds the board in every camera's colour image, lifts its corners with depth,
solves each camera's pose, refines the cameras' overlap with ICP, finds the floor and writes each
camera's ``world_from_camera`` (floor at y = 0, +y up; origin: the board's corner dropped onto
the floor) with its reprojection error (px) and cloud-to-cloud residual (mm).

Exit status: 0 when every camera was calibrated; 1 when some camera did not see the board (the
file then holds the others, and the report says which camera and why); 2 on an error, with
nothing written. Existing files are never replaced without --force.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from calibration.board import PAGE_SIZES_MM, BoardSpec, board_for_page, write_board
from calibration.calibfile import check_writable, save_calibration
from holo.errors import CalibrationError, ConfigError
from holo.frame import RGBDFrame

if TYPE_CHECKING:  # the rig needs Open3D; imported when cameras are calibrated, not to print a board
    from calibration.rig import RigResult

__all__ = ["add_calibrate_arguments", "run_calibrate"]

logger = logging.getLogger(__name__)


def add_calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``board`` and ``cameras`` sub-commands to ``parser`` (``holo calibrate``)."""
    sub = parser.add_subparsers(dest="calibrate", metavar="WHAT", required=True)
    b = sub.add_parser(
        "board",
        help="write a printable ChArUco board (PDF or PNG) with its true square size printed on it",
        description="Write the calibration board, landscape at 300 dpi. Print it at 100 % (actual size) "
        "and measure one square: the page says what it should be.",
    )
    b.add_argument(
        "--out", default=None, metavar="FILE", help="FILE.pdf or FILE.png (default charuco-board-SIZE.pdf)"
    )
    b.add_argument("--size", choices=sorted(PAGE_SIZES_MM), default="A4", help="page size (default A4)")
    b.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    _verbosity(b)

    c = sub.add_parser(
        "cameras",
        help="find every camera's pose from the board they see; write calibration.json",
        description="Each camera looks at the board at the same time. Poses come from the board's corners "
        "(colour) lifted by depth, refined by ICP on the cameras' overlapping clouds; the floor sets the world "
        "(y = 0, +y up). Reports each camera's reprojection error (px) and cloud-to-cloud residual (mm). "
        "Exit status 1 when a camera did not see the board (the others are written), 2 on error.",
    )
    c.add_argument(
        "--source", action="append", metavar="SRC", required=True, help="a camera or recording (repeat)"
    )
    c.add_argument(
        "--out", default="calibration.json", metavar="FILE", help="where to write (default calibration.json)"
    )
    c.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    c.add_argument(
        "--board",
        choices=sorted(PAGE_SIZES_MM),
        default="A4",
        help="page the board was printed on (default A4)",
    )
    c.add_argument(
        "--square-mm",
        type=float,
        default=None,
        metavar="MM",
        help="the printed square's side as measured, when the printer scaled the page",
    )
    c.add_argument(
        "--frames", type=int, default=5, metavar="N", help="frames per camera, median-averaged (default 5)"
    )
    c.add_argument(
        "--board-height-m",
        type=float,
        default=None,
        metavar="H",
        help="when no floor is in view: the board lies level H metres above the floor (default: on it)",
    )
    c.add_argument("--no-icp", action="store_true", help="poses from the board alone, no ICP refinement")
    c.add_argument(
        "--max-residual-mm",
        type=float,
        default=None,
        metavar="MM",
        help="warn when a camera's cloud-to-cloud residual is above MM (default 10)",
    )
    c.add_argument(
        "--intrinsics", metavar="FX,FY,CX,CY|FILE", help="camera intrinsics, overriding the source's"
    )
    c.add_argument(
        "--size", default="640x480", metavar="WxH", help="frame size for live cameras (default 640x480)"
    )
    c.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    _verbosity(c)


def _verbosity(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: given after the sub-command it adds to, and never resets, the one given before it.
    p.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output (-vv for debug)"
    )


def run_calibrate(args: argparse.Namespace) -> int:
    if args.calibrate == "board":
        return _run_board(args)
    return _run_cameras(args)


def _run_board(args: argparse.Namespace) -> int:
    out = args.out or f"charuco-board-{args.size}.pdf"
    spec = write_board(out, args.size, force=args.force)
    print(
        f"holo calibrate: wrote {out}: ChArUco {spec.squares_x} x {spec.squares_y} ({spec.dictionary}) on {args.size}, "
        f"squares {spec.square_length_m * 1000:.2f} mm. Print at 100 % and measure one square."
    )
    return 0


def board_spec(args: argparse.Namespace) -> BoardSpec:
    spec = board_for_page(args.board)
    if args.square_mm is not None:
        if not 5.0 <= args.square_mm <= 500.0:
            raise ConfigError(f"--square-mm must be 5 to 500 millimetres, got {args.square_mm:g}")
        spec = spec.with_square_mm(args.square_mm)
    return spec


def read_frames(specs: list[str], args: argparse.Namespace) -> list[RGBDFrame]:
    """One (median-averaged) frame per source, named by the source's serial (as ``holo capture`` names it)."""
    import dataclasses

    from calibration.rig import average_frames
    from holo.cli import parse_intrinsics, parse_size
    from holo.sources import SourceOptions, open_source

    options = SourceOptions(
        intrinsics=parse_intrinsics(args.intrinsics) if args.intrinsics else None,
        size=parse_size(args.size),
        seed=args.seed,
    )
    frames: list[RGBDFrame] = []
    for spec in specs:
        with open_source(spec, options) as source:
            got = [frame for _, frame in zip(range(args.frames), source)]
            serial = source.serial
        if not got:
            raise CalibrationError(f"--source {spec} gave no frames")
        frames.append(dataclasses.replace(average_frames(got), serial=serial))
        logger.info("%s: %d frame(s) from %s", serial, len(got), spec)
    return frames


def _run_cameras(args: argparse.Namespace) -> int:
    if args.frames < 1:
        raise ConfigError("--frames must be at least 1")
    if args.board_height_m is not None and not -1.0 <= args.board_height_m <= 3.0:
        raise ConfigError(f"--board-height-m must be between -1 and 3 metres, got {args.board_height_m:g}")
    if args.max_residual_mm is not None and not args.max_residual_mm > 0:
        raise ConfigError(f"--max-residual-mm must be positive, got {args.max_residual_mm:g}")
    from calibration.refine import POOR_RESIDUAL_MM
    from calibration.rig import RigOptions, calibrate_rig

    spec = board_spec(args)
    check_writable(args.out, force=args.force)  # before any work: nothing is overwritten by accident
    frames = read_frames(args.source, args)
    max_residual_mm = POOR_RESIDUAL_MM if args.max_residual_mm is None else args.max_residual_mm
    options = RigOptions(
        icp=not args.no_icp, board_height_m=args.board_height_m, max_residual_mm=max_residual_mm
    )
    result = calibrate_rig(frames, spec, options)
    save_calibration(result.calibration, args.out, force=args.force)
    print(report(result, args.out))
    return 1 if result.failures else 0


def report(result: RigResult, out: str) -> str:
    """The plain-text report printed after calibrating."""
    cal = result.calibration
    lines = [
        f"holo calibrate: {len(cal.cameras)} camera(s) written to {out} "
        f"(board {cal.board.squares_x} x {cal.board.squares_y}, squares {cal.board.square_length_m * 1000:.2f} mm)",
        f"  {'camera':<20} {'corners':>7} {'reproj px':>9} {'ICP mm':>7}  {'ICP':<15} position in the world (m)",
    ]
    for serial, cam in cal.cameras.items():
        x, y, z = cam.world_from_camera[:3, 3]
        icp = "reference" if cam.icp_rms_mm is None else f"{cam.icp_rms_mm:.1f}"
        reproj = "-" if cam.reprojection_error_px is None else f"{cam.reprojection_error_px:.2f}"
        lines.append(
            f"  {serial:<20} {cam.extra.get('board_corners', 0):>3}/{cal.board.corner_count:<3} {reproj:>9} "
            f"{icp:>7}  {cam.extra.get('icp', ''):<15} x {x:+.3f}  y {y:+.3f}  z {z:+.3f}"
        )
    lines.append(f"  world: {result.world.how}")
    if result.world.floor is not None:
        lines.append(
            f"  floor: RMS {result.world.floor.rms_m * 1000:.1f} mm; board corner {result.world.board_height_m:.3f} m above it, "
            f"board tilted {result.world.board_tilt_deg:.1f}° from level"
        )
    lines += [f"warning: {w}" for w in result.warnings]
    return "\n".join(lines)
