"""Holo: holographic telepresence.

A capture node turns a depth camera (or a webcam) into a compressed point cloud of the person in
front of it, streams it peer-to-peer over WebRTC, and a viewer renders remote participants in 3D.
"""

from __future__ import annotations

import logging

from holo.errors import HoloError
from holo.frame import Intrinsics, PersonCloud, RGBDFrame, Skeleton

__all__ = ["HoloError", "Intrinsics", "PersonCloud", "RGBDFrame", "Skeleton", "__version__"]
__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
