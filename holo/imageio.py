"""Reading colour and 16-bit depth images with errors that name the file and the problem."""

from __future__ import annotations

import os

import cv2
import numpy as np

from holo.errors import SourceError

__all__ = ["read_color", "read_depth_mm"]

# Refuse absurd images before decoding them (a 16k x 16k RGB image is already 768 MB).
MAX_PIXELS = 8192 * 8192


def _read_bytes(path: str, what: str) -> np.ndarray:
    if not os.path.exists(path):
        raise SourceError(f"{what} {path} does not exist")
    if os.path.isdir(path):
        raise SourceError(f"{what} {path} is a folder, expected an image file")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise SourceError(f"{what} {path} could not be read: {exc.strerror or exc}") from None
    if data.size == 0:
        raise SourceError(f"{what} {path} is empty")
    return data


def _decode(data: np.ndarray, flags: int, path: str, what: str) -> np.ndarray:
    # OpenCV decodes a truncated PNG/TIFF/JPEG either to None or, for some formats, to a partly
    # filled image. Check the container's own integrity first where we can.
    if data[:8].tobytes() == b"\x89PNG\r\n\x1a\n" and data[-12:-4].tobytes()[4:] != b"IEND":
        raise SourceError(f"{what} {path} is truncated or corrupt (its PNG end marker is missing)")
    image = cv2.imdecode(data, flags)
    if image is None:
        raise SourceError(
            f"{what} {path} is not a readable image (truncated, corrupt or an unsupported format)"
        )
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise SourceError(
            f"{what} {path} is {image.shape[1]}×{image.shape[0]} pixels, larger than Holo accepts"
        )
    return image


def read_color(path: str) -> np.ndarray:
    """An 8-bit colour image as HxWx3 RGB uint8 (grey images are expanded to three channels)."""
    image = _decode(_read_bytes(path, "colour image"), cv2.IMREAD_UNCHANGED, path, "colour image")
    if image.dtype != np.uint8:
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)
        else:
            raise SourceError(f"colour image {path} has {image.dtype} pixels; expected 8-bit colour")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_depth_mm(path: str) -> np.ndarray:
    """A single-channel 16-bit depth image (HxW uint16)."""
    image = _decode(_read_bytes(path, "depth image"), cv2.IMREAD_UNCHANGED, path, "depth image")
    if image.ndim != 2:
        raise SourceError(f"depth image {path} has {image.shape[2]} channels; expected one 16-bit channel")
    if image.dtype != np.uint16:
        bits = image.dtype.itemsize * 8
        raise SourceError(
            f"depth image {path} is {bits}-bit {image.dtype}; expected 16-bit depth (uint16 units)"
        )
    return image
