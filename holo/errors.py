"""One exception hierarchy for everything Holo refuses.

Every error Holo raises on bad input is a :class:`HoloError` subclass whose message is a sentence
saying what was wrong and, where there is one, naming the file, device or peer involved. Library
exceptions (OpenCV, Open3D, PyAV, pyrealsense2, zmq, ...) are caught at the seam where they occur
and re-raised as one of these, so a user never sees a traceback from deep inside a library.
"""

from __future__ import annotations

__all__ = [
    "BusError",
    "CalibrationError",
    "CallError",
    "CameraNotFoundError",
    "CodecError",
    "ConfigError",
    "HoloError",
    "IntrinsicsError",
    "MissingDependencyError",
    "PacketError",
    "RecordingError",
    "SignalingError",
    "SourceError",
    "ViewerError",
]


class HoloError(Exception):
    """Base class of every error Holo raises on purpose."""


class ConfigError(HoloError):
    """A command-line option, configuration value or file argument is not usable."""


class IntrinsicsError(ConfigError):
    """Camera intrinsics are missing or physically implausible."""


class MissingDependencyError(HoloError):
    """An optional library or system component needed for this feature is not installed."""


class SourceError(HoloError):
    """A frame source could not be opened or read (missing, truncated or malformed input)."""


class CameraNotFoundError(SourceError):
    """A live camera was asked for but none is connected (or it was unplugged)."""


class PacketError(HoloError):
    """A packet's bytes are not a valid Holo packet."""


class CodecError(HoloError):
    """A codec could not encode or decode a cloud."""


class BusError(HoloError):
    """The local ZMQ bus could not be reached or used."""


class SignalingError(HoloError):
    """The signaling server refused a request or could not be reached."""


class CallError(HoloError):
    """A WebRTC call could not be set up or failed."""


class RecordingError(HoloError):
    """A recording could not be written or read."""


class CalibrationError(HoloError):
    """Calibration failed or a calibration file is unusable."""


class ViewerError(HoloError):
    """The viewer could not render (no GL context, no OpenXR runtime, ...)."""
