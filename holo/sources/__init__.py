"""Frame sources: where RGB-D frames come from. See :mod:`holo.sources.base`."""

from __future__ import annotations

from holo.sources.base import (
    FrameSource,
    SourceOptions,
    describe_sources,
    open_source,
    register_source,
    split_spec,
)

__all__ = ["FrameSource", "SourceOptions", "describe_sources", "open_source", "register_source", "split_spec"]
