"""Voice: the microphone (or a file standing in for it) out, the remote voice in.

Outgoing audio is an aiortc audio track (Opus on the wire). Incoming audio is decoded by aiortc;
Holo publishes it on the bus as ``holo/<participant>/audio`` messages — an ``AUDIO_HEADER`` (arrival
time in ns, sample rate, channels, samples per channel) followed by interleaved signed 16-bit PCM —
so the recorder can store it, and can also write it to a WAV file (``--audio-out FILE.wav``).
"""

from __future__ import annotations

import logging
import os
import struct
import wave
from dataclasses import dataclass

import numpy as np

from holo.errors import ConfigError

__all__ = ["AUDIO_HEADER", "AudioChunk", "WavWriter", "open_microphone", "pack_audio", "unpack_audio"]

logger = logging.getLogger(__name__)

AUDIO_HEADER = struct.Struct("!qIHI")
MAX_AUDIO_SAMPLES = 48000 * 2


@dataclass(frozen=True, slots=True)
class AudioChunk:
    time_ns: int
    sample_rate: int
    channels: int
    pcm: np.ndarray  # (samples, channels) int16


def pack_audio(chunk: AudioChunk) -> bytes:
    samples = chunk.pcm.shape[0]
    return (
        AUDIO_HEADER.pack(chunk.time_ns, chunk.sample_rate, chunk.channels, samples)
        + chunk.pcm.astype("<i2").tobytes()
    )


def unpack_audio(data: bytes) -> AudioChunk:
    from holo.codec.packet import SectionError

    if len(data) < AUDIO_HEADER.size:
        raise SectionError("audio message is shorter than its header")
    t, rate, channels, samples = AUDIO_HEADER.unpack_from(data, 0)
    if not (8000 <= rate <= 192000 and 1 <= channels <= 8 and samples <= MAX_AUDIO_SAMPLES):
        raise SectionError(
            f"audio message header is implausible ({rate} Hz, {channels} channels, {samples} samples)"
        )
    if len(data) != AUDIO_HEADER.size + samples * channels * 2:
        raise SectionError("audio message length does not match its header")
    pcm = np.frombuffer(data, "<i2", samples * channels, AUDIO_HEADER.size).reshape(samples, channels)
    return AudioChunk(t, rate, channels, pcm.astype(np.int16))


def frame_to_chunk(frame: object, time_ns: int) -> AudioChunk:
    """An aiortc/PyAV AudioFrame (s16, packed or planar) as interleaved int16 samples."""
    array = frame.to_ndarray()  # type: ignore[attr-defined]
    channels = len(frame.layout.channels)  # type: ignore[attr-defined]
    if frame.format.is_planar:  # type: ignore[attr-defined]
        pcm = array.T
    else:
        pcm = array.reshape(-1, channels)
    return AudioChunk(time_ns, int(frame.sample_rate), channels, np.ascontiguousarray(pcm, np.int16))  # type: ignore[attr-defined]


def open_microphone(spec: str | None) -> tuple[object | None, str]:
    """(an aiortc MediaPlayer or None, what it is). ``spec``: a file, ``FORMAT:DEVICE``, or None for the default."""
    from aiortc.contrib.media import MediaPlayer

    if spec is not None and os.path.exists(spec):
        try:
            player = MediaPlayer(spec, loop=True)
        except Exception as exc:  # PyAV errors on unreadable media
            raise ConfigError(f"--audio-in {spec} cannot be opened as audio: {exc}") from None
        if player.audio is None:
            raise ConfigError(f"--audio-in {spec} has no audio stream")
        return player, f"file {spec}"
    candidates = []
    if spec is not None:
        fmt, sep, device = spec.partition(":")
        if not sep:
            raise ConfigError(
                f"--audio-in {spec!r} is neither a file nor FORMAT:DEVICE (e.g. alsa:default, pulse:default)"
            )
        candidates.append((fmt, device))
    else:
        candidates += [("pulse", "default"), ("alsa", "default")]
    for fmt, device in candidates:
        try:
            player = MediaPlayer(device, format=fmt)
        except Exception as exc:
            if spec is not None:
                raise ConfigError(
                    f"--audio-in {spec}: cannot open the {fmt} device {device!r}: {exc}"
                ) from None
            continue
        if player.audio is not None:
            return player, f"{fmt} device {device}"
    logger.warning("no microphone found (tried PulseAudio and ALSA defaults): sending no voice")
    return None, "none"


class WavWriter:
    """Received voice to a WAV file, written as it arrives."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._wav: wave.Wave_write | None = None

    def write(self, chunk: AudioChunk) -> None:
        if self._wav is None:
            try:
                self._wav = wave.open(self.path, "wb")  # noqa: SIM115 - kept open while audio arrives
            except OSError as exc:
                raise ConfigError(f"--audio-out {self.path}: cannot write ({exc.strerror})") from None
            self._wav.setnchannels(chunk.channels)
            self._wav.setsampwidth(2)
            self._wav.setframerate(chunk.sample_rate)
        self._wav.writeframes(chunk.pcm.astype("<i2").tobytes())

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None
