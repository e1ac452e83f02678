"""The one small interface every frame source implements, and the registry that picks one.

A source is named on the command line as ``KIND`` or ``KIND:ARG`` (``synthetic``, ``realsense``,
``realsense:FILE.bag``, ``k4a:FILE.mkv``, ``rgbd:DIR``, ``pcd:FILE``, ...). Each kind lives in its own
module, imported only when asked for, so a missing camera SDK never breaks the other sources.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType

from holo.errors import ConfigError, IntrinsicsError, SourceError
from holo.frame import Intrinsics, RGBDFrame

__all__ = ["SOURCE_KINDS", "FrameSource", "SourceOptions", "check_readable_file", "open_source", "split_spec"]


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """Options that apply to any source; each source uses the ones that make sense for it."""

    #: Overrides the intrinsics a source would otherwise read or assume: a full :class:`Intrinsics`,
    #: or (fx, fy, cx, cy) in pixels for whatever size the images turn out to be.
    intrinsics: Intrinsics | tuple[float, float, float, float] | None = None
    #: Seed of the synthetic performer (and of any noise a source adds).
    seed: int = 0
    #: Frames per second a live or synthetic source produces (file sources use their own timing).
    fps: float = 30.0
    #: Start over at the end of a finite recording instead of stopping.
    loop: bool = False
    #: Pace file playback at its recorded rate instead of as fast as frames can be read.
    realtime: bool = False
    #: Width, height of frames for sources that can choose (synthetic, live cameras).
    size: tuple[int, int] = (640, 480)

    def intrinsics_for(self, width: int, height: int, what: str) -> Intrinsics | None:
        """The user's intrinsics for images of this size (None when the user gave none)."""
        k = self.intrinsics
        if k is None:
            return None
        if isinstance(k, Intrinsics):
            if (k.width, k.height) != (width, height):
                raise IntrinsicsError(
                    f"{what}: --intrinsics describe {k.width}×{k.height} but the images are {width}×{height}"
                )
            return k
        fx, fy, cx, cy = k
        return Intrinsics(width=width, height=height, fx=fx, fy=fy, cx=cx, cy=cy)


class FrameSource:
    """Base class of every source: an iterator of :class:`RGBDFrame` that must be closed.

    Subclasses implement :meth:`_frames` (a generator) and may override :meth:`close`. Iteration
    stops at the end of a finite recording. Errors are :class:`SourceError` with the source named.
    """

    kind: str = "?"

    def __init__(self, spec: str, options: SourceOptions) -> None:
        self.spec = spec
        self.options = options

    @property
    def serial(self) -> str:
        """A stable name of the camera (its serial number where it has one)."""
        return self.spec

    def _frames(self) -> Iterator[RGBDFrame]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[RGBDFrame]:
        return self._frames()

    def close(self) -> None:
        """Release the device or file. Safe to call twice."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec!r}>"


# kind -> "module:factory"; the factory is called as factory(arg, spec, options).
SOURCE_KINDS: dict[str, str] = {
    "synthetic": "holo.sources.synthetic:open_synthetic",
    "realsense": "holo.sources.realsense:open_realsense",
    "k4a": "holo.sources.k4a:open_k4a",
    "rgbd": "holo.sources.rgbd:open_rgbd",
    "pcd": "holo.sources.pcd:open_pcd",
    "still": "holo.sources.still:open_still",
    "video": "holo.sources.video:open_video",
    "webcam": "holo.sources.video:open_webcam",
}

_DESCRIPTIONS = {
    "synthetic": "synthetic[:SEED] the built-in animated performer (no camera needed)",
    "realsense": "realsense[:SERIAL|FILE.bag|FILE.db3] a live Intel RealSense camera or a recording of one",
    "k4a": "k4a:FILE.mkv an Azure Kinect recording (k4arecorder's Matroska)",
    "rgbd": "rgbd:DIR a folder of colour + 16-bit depth images with an intrinsics file",
    "pcd": "pcd:FILE an organised PCD point cloud (one camera frame)",
    "still": "still:SRC the first frames of SRC held in memory and replayed as a live camera (at --fps, stamped now)",
    "video": "video:FILE a video file (no depth: the person's relief comes from body tracking)",
    "webcam": "webcam[:INDEX] a live webcam (no depth: relief from body tracking)",
}


def register_source(kind: str, target: str, description: str) -> None:
    """Add a source kind (``target`` is ``"module:factory"``)."""
    SOURCE_KINDS[kind] = target
    _DESCRIPTIONS[kind] = description


def describe_sources() -> list[str]:
    return [_DESCRIPTIONS.get(kind, kind) for kind in SOURCE_KINDS]


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"k4a:/data/x.mkv"`` -> ``("k4a", "/data/x.mkv")``; ``"synthetic"`` -> ``("synthetic", None)``."""
    kind, sep, arg = spec.partition(":")
    return kind.strip().lower(), (arg if sep else None)


def open_source(spec: str, options: SourceOptions | None = None) -> FrameSource:
    """Open the source named by ``spec`` (see the module docstring)."""
    options = options or SourceOptions()
    kind, arg = split_spec(spec)
    target = SOURCE_KINDS.get(kind)
    if target is None:
        known = ", ".join(sorted(SOURCE_KINDS))
        raise ConfigError(f"unknown source kind {kind!r} in --source {spec!r}; known kinds: {known}")
    module_name, _, func_name = target.partition(":")
    module = importlib.import_module(module_name)
    factory: Callable[[str | None, str, SourceOptions], FrameSource] = getattr(module, func_name)
    return factory(arg, spec, options)


def check_readable_file(path: str, what: str) -> str:
    """Refuse a path that does not exist, is a folder or cannot be read, naming it."""
    if not path:
        raise SourceError(f"{what}: no file name given")
    if not os.path.exists(path):
        raise SourceError(f"{what}: {path} does not exist")
    if os.path.isdir(path):
        raise SourceError(f"{what}: {path} is a folder, expected a file")
    if not os.access(path, os.R_OK):
        raise SourceError(f"{what}: {path} is not readable (permission denied)")
    if os.path.getsize(path) == 0:
        raise SourceError(f"{what}: {path} is empty")
    return path
