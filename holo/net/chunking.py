"""Splitting packets into data-channel messages and putting them back together.

WebRTC peers refuse messages larger than the remote's maximum (64 KiB is the portable size), so a
packet travels as one or more messages, each with an 8-byte header::

    frame id (4 bytes, wraps), chunk index (2 bytes), chunk count (2 bytes), then the payload.

The reassembler keeps at most ``max_frames`` incomplete frames and at most ``max_frame_bytes`` per
frame: when a newer frame completes, older incomplete ones are dropped (and counted) — on a
partially reliable channel a lost chunk must not hold memory or delay newer frames.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass

from holo.errors import PacketError

__all__ = ["CHUNK_HEADER", "MAX_MESSAGE_BYTES", "Reassembler", "split_packet"]

MAX_MESSAGE_BYTES = 65536
CHUNK_HEADER = struct.Struct("!IHH")
_MAX_CHUNKS = 0xFFFF


def split_packet(frame_id: int, packet: bytes, *, max_message_bytes: int = MAX_MESSAGE_BYTES) -> list[bytes]:
    """The messages that carry ``packet`` (at most ``max_message_bytes`` each, header included)."""
    room = max_message_bytes - CHUNK_HEADER.size
    if room < 1:
        raise ValueError("max message size leaves no room for data")
    count = max(1, -(-len(packet) // room))
    if count > _MAX_CHUNKS:
        raise PacketError(f"packet of {len(packet)} bytes needs {count} chunks, more than {_MAX_CHUNKS}")
    fid = frame_id & 0xFFFFFFFF
    view = memoryview(packet)
    return [CHUNK_HEADER.pack(fid, i, count) + view[i * room : (i + 1) * room] for i in range(count)]


@dataclass
class _Partial:
    count: int
    chunks: dict[int, bytes]
    size: int = 0


class Reassembler:
    def __init__(self, *, max_frames: int = 4, max_frame_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_frames = max_frames
        self.max_frame_bytes = max_frame_bytes
        self._partial: OrderedDict[int, _Partial] = OrderedDict()
        self.frames_dropped = 0

    def push(self, message: bytes) -> bytes | None:
        """Add one message; returns the whole packet when this message completes it.

        Raises :class:`PacketError` for a malformed message (the caller logs and drops it).
        """
        if len(message) < CHUNK_HEADER.size:
            raise PacketError(
                f"data-channel message of {len(message)} bytes is shorter than its chunk header"
            )
        fid, index, count = CHUNK_HEADER.unpack_from(message, 0)
        if count == 0 or index >= count:
            raise PacketError(f"chunk {index} of {count} is impossible")
        payload = bytes(message[CHUNK_HEADER.size :])
        if count == 1:
            self._drop_older(fid)
            return payload
        part = self._partial.get(fid)
        if part is None:
            part = _Partial(count, {})
            self._partial[fid] = part
            while len(self._partial) > self.max_frames:
                self._partial.popitem(last=False)
                self.frames_dropped += 1
        if part.count != count:
            raise PacketError(f"frame {fid} chunk claims {count} chunks, earlier ones said {part.count}")
        if index in part.chunks:
            return None
        part.size += len(payload)
        if part.size > self.max_frame_bytes:
            del self._partial[fid]
            self.frames_dropped += 1
            raise PacketError(f"frame {fid} grew past {self.max_frame_bytes} bytes")
        part.chunks[index] = payload
        if len(part.chunks) < count:
            return None
        del self._partial[fid]
        self._drop_older(fid)
        return b"".join(part.chunks[i] for i in range(count))

    def _drop_older(self, fid: int) -> None:
        """A frame completed: incomplete frames sent before it will never be shown; forget them."""
        for other in list(self._partial):
            if ((fid - other) & 0xFFFFFFFF) < 0x80000000:
                del self._partial[other]
                self.frames_dropped += 1
