"""Free local TCP ports on 127.0.0.1, for the demo's processes and for tests.

A port found free may be taken by someone else before it is used: these are for loopback set-ups
that can simply try again, not a reservation.
"""

from __future__ import annotations

import socket

from holo.errors import HoloError

__all__ = ["free_port", "free_port_pair"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_pair(attempts: int = 100) -> int:
    """A port P such that P and P+1 were both free a moment ago (a bus takes two adjacent ports)."""
    for _ in range(attempts):
        p = free_port()
        if p >= 65534:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
        return p
    raise HoloError("no free pair of adjacent local ports on 127.0.0.1")
