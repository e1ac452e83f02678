"""The ChArUco calibration board: its definition, and the printable page that carries it.

One definition serves printing and detection: :class:`BoardSpec` names the ArUco dictionary
(``DICT_5X5_100``), the grid (7 x 5 squares), the square side and the marker side (0.75 of the
square) in metres. The calibration file stores it, so a later detection uses the same board.

The page (:func:`render_board_page`) is A4 or A3, landscape, at 300 dpi. The board fills the
page inside 12 mm margins and above an 18 mm band of text. Its squares are a whole number of
pixels, so the printed size is exact at 100 % scale: an A4 board has 396-pixel squares of
33.53 mm, an A3 board 602-pixel squares of 50.97 mm. The page prints that size and tells the user
to measure it: a printer that scales the page changes it, and ``holo calibrate cameras
--square-mm`` then takes the measured value.

The board frame is OpenCV's: origin at the top-left outer corner of the pattern (as printed, text
below), x along the top edge to the right, y down the left edge, z into the board. A camera
looking at the printed face sees the board from its -z side.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import cv2
import numpy as np

from holo.errors import CalibrationError

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "DPI",
    "PAGE_SIZES_MM",
    "BoardSpec",
    "board_for_page",
    "page_text",
    "render_board_page",
    "write_board",
]

logger = logging.getLogger(__name__)

#: Landscape page sizes (width, height) in millimetres.
PAGE_SIZES_MM: dict[str, tuple[float, float]] = {"A4": (297.0, 210.0), "A3": (420.0, 297.0)}
DPI = 300
MARGIN_MM = 12.0
TEXT_BAND_MM = 18.0
MARKER_RATIO = 0.75
_MM_PER_INCH = 25.4


@dataclass(frozen=True, slots=True)
class BoardSpec:
    """A ChArUco board: ``squares_x`` x ``squares_y`` squares with ArUco markers in the white ones."""

    square_length_m: float
    marker_length_m: float
    squares_x: int = 7
    squares_y: int = 5
    dictionary: str = "DICT_5X5_100"

    def __post_init__(self) -> None:
        if not (2 <= self.squares_x <= 30 and 2 <= self.squares_y <= 30):
            raise CalibrationError(
                f"a board needs 2 to 30 squares per side, got {self.squares_x} x {self.squares_y}"
            )
        for name in ("square_length_m", "marker_length_m"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and 0.002 <= value <= 1.0):
                raise CalibrationError(f"board {name} must be 2 mm to 1 m, got {value!r}")
        if self.marker_length_m >= self.square_length_m:
            raise CalibrationError(
                f"board markers ({self.marker_length_m * 1000:.1f} mm) must be smaller than its squares "
                f"({self.square_length_m * 1000:.1f} mm)"
            )
        if not hasattr(cv2.aruco, self.dictionary) or not self.dictionary.startswith("DICT_"):
            raise CalibrationError(f"unknown ArUco dictionary {self.dictionary!r}")
        markers = (self.squares_x * self.squares_y) // 2
        if markers > _dictionary_size(self.dictionary):
            raise CalibrationError(
                f"a {self.squares_x} x {self.squares_y} board needs {markers} markers, more than "
                f"{self.dictionary} holds"
            )

    # -- OpenCV ------------------------------------------------------------------------------------
    def cv_board(self) -> cv2.aruco.CharucoBoard:
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        return cv2.aruco.CharucoBoard(
            (self.squares_x, self.squares_y), self.square_length_m, self.marker_length_m, dictionary
        )

    @property
    def corner_count(self) -> int:
        """Inner chessboard corners (the ChArUco corners a detector can find)."""
        return (self.squares_x - 1) * (self.squares_y - 1)

    def corners_in_board(self) -> np.ndarray:
        """Every ChArUco corner in the board frame (corner_count x 3, metres), indexed by corner id."""
        return np.asarray(self.cv_board().getChessboardCorners(), np.float64).reshape(-1, 3)

    @property
    def size_m(self) -> tuple[float, float]:
        return (self.squares_x * self.square_length_m, self.squares_y * self.square_length_m)

    def with_square_mm(self, square_mm: float) -> BoardSpec:
        """The same board printed at another scale (a measured square side in millimetres)."""
        ratio = self.marker_length_m / self.square_length_m
        return replace(self, square_length_m=square_mm / 1000.0, marker_length_m=square_mm / 1000.0 * ratio)

    # -- the calibration file ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, object]:
        return {
            "type": "charuco",
            "dictionary": self.dictionary,
            "squares_x": self.squares_x,
            "squares_y": self.squares_y,
            "square_length_m": self.square_length_m,
            "marker_length_m": self.marker_length_m,
        }

    @classmethod
    def from_dict(cls, data: object) -> BoardSpec:
        if not isinstance(data, dict) or data.get("type", "charuco") != "charuco":
            raise CalibrationError("the board must be an object with type 'charuco'")
        try:
            return cls(
                square_length_m=float(data["square_length_m"]),
                marker_length_m=float(data["marker_length_m"]),
                squares_x=int(data["squares_x"]),
                squares_y=int(data["squares_y"]),
                dictionary=str(data["dictionary"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(
                f"the board needs dictionary, squares_x, squares_y, square_length_m and marker_length_m: {exc}"
            ) from None


def _dictionary_size(name: str) -> int:
    dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, name))
    return int(dictionary.bytesList.shape[0])


def _px(mm: float) -> float:
    return mm / _MM_PER_INCH * DPI


def _square_px(page: str, squares_x: int, squares_y: int) -> int:
    width_mm, height_mm = PAGE_SIZES_MM[page]
    avail_x = _px(width_mm - 2 * MARGIN_MM)
    avail_y = _px(height_mm - 2 * MARGIN_MM - TEXT_BAND_MM)
    return int(min(avail_x / squares_x, avail_y / squares_y))


def board_for_page(page: str = "A4", *, squares_x: int = 7, squares_y: int = 5) -> BoardSpec:
    """The board that fills a landscape ``page`` (A4 or A3) at 300 dpi, squares a whole pixel count."""
    if page not in PAGE_SIZES_MM:
        raise CalibrationError(f"page size must be one of {', '.join(PAGE_SIZES_MM)}, got {page!r}")
    square_m = _square_px(page, squares_x, squares_y) * _MM_PER_INCH / DPI / 1000.0
    return BoardSpec(
        square_length_m=square_m,
        marker_length_m=square_m * MARKER_RATIO,
        squares_x=squares_x,
        squares_y=squares_y,
    )


def page_text(spec: BoardSpec, page: str) -> list[str]:
    """The lines printed under the board: what it is, its true square size, how to print and use it."""
    square_mm = spec.square_length_m * 1000
    return [
        f"Holo calibration board - ChArUco {spec.squares_x} x {spec.squares_y}, {spec.dictionary}, "
        f"square size {square_mm:.2f} mm, marker {spec.marker_length_m * 1000:.2f} mm",
        f"Print at 100 % (actual size) on {page}, keep it flat. Measure one square: if it is not "
        f"{square_mm:.2f} mm, pass --square-mm <measured> to 'holo calibrate cameras'.",
        "World origin: the top-left corner of the pattern, dropped onto the floor; x runs along the top edge.",
    ]


def render_board_page(page: str = "A4") -> tuple[np.ndarray, BoardSpec]:
    """The printable page (H x W uint8 grey, 300 dpi) and the board it carries."""
    from PIL import Image, ImageDraw, ImageFont

    spec = board_for_page(page)
    width_mm, height_mm = PAGE_SIZES_MM[page]
    page_w, page_h = round(_px(width_mm)), round(_px(height_mm))
    sq = _square_px(page, spec.squares_x, spec.squares_y)
    board_w, board_h = sq * spec.squares_x, sq * spec.squares_y
    pattern = spec.cv_board().generateImage((board_w, board_h), marginSize=0, borderBits=1)
    canvas = np.full((page_h, page_w), 255, np.uint8)
    x0 = (page_w - board_w) // 2
    y0 = round(_px(MARGIN_MM))
    canvas[y0 : y0 + board_h, x0 : x0 + board_w] = pattern
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    lines = page_text(spec, page)
    font = ImageFont.load_default(size=round(_px(3.2)))
    y = y0 + board_h + round(_px(3.0))
    for line in lines:
        draw.text((x0, y), line, fill=0, font=font)
        y += round(_px(4.6))
    # A small mark at the origin corner.
    r = round(_px(2.0))
    draw.line([(x0 - 3 * r, y0 - r), (x0 - r, y0 - r)], fill=0, width=3)
    draw.line([(x0 - r, y0 - 3 * r), (x0 - r, y0 - r)], fill=0, width=3)
    return np.asarray(image), spec


def _save_pdf(image: Image.Image, path: str) -> None:
    """A one-page PDF at 300 dpi, its pixels stored losslessly.

    Pillow stores grey images in a PDF as JPEG, which blurs the squares' edges; a black-and-white
    image goes in as CCITT G4 (lossless) when Pillow has libtiff, else as JPEG at quality 100.
    """
    from PIL import Image, features

    bilevel = image.point(lambda v: 255 if v >= 128 else 0).convert("1", dither=Image.Dither.NONE)
    if features.check("libtiff"):
        bilevel.save(path, "PDF", resolution=float(DPI))
    else:
        image.save(path, "PDF", resolution=float(DPI), quality=100)


def write_board(path: str, page: str = "A4", *, force: bool = False) -> BoardSpec:
    """Write the printable board as PDF or PNG (by the file's extension); never overwrites unless ``force``."""
    from PIL import Image

    ext = os.path.splitext(path)[1].lower()
    if ext not in (".pdf", ".png"):
        raise CalibrationError(f"the board is written as .pdf or .png, not {ext or 'no extension'} ({path})")
    if os.path.exists(path) and not force:
        raise CalibrationError(f"{path} already exists; pass --force to overwrite it")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CalibrationError(f"cannot write {path}: the folder {folder} does not exist")
    pixels, spec = render_board_page(page)
    image = Image.fromarray(pixels)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        if ext == ".pdf":
            _save_pdf(image, tmp)
        else:
            image.save(tmp, "PNG", dpi=(DPI, DPI))
        os.replace(tmp, path)
    except OSError as exc:
        raise CalibrationError(f"could not write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    logger.info("wrote the %s board to %s (square %.2f mm)", page, path, spec.square_length_m * 1000)
    return spec
