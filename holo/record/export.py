"""Exports of a recording for other tools: PLY, skeleton CSV, WAV, and a Foxglove-ready MCAP.

One pass over the recording feeds every requested output (a progress bar on a terminal):

- ``ply_dir``: ``DIR/<participant>/<n>.ply``, one binary PLY per frame (``n`` counts the
  participant's frames from 0), in the world frame, with participant, sequence and capture time in
  its ``comment holo`` lines (:func:`holo.ply.read_ply` reads them back).
- ``skeleton_csv``: one row per frame and joint for every packet that carries a skeleton:
  ``time_ns`` (capture time), ``participant``, ``sequence``, ``joint_index``, ``joint_name``
  (:data:`holo.frame.POSE_JOINT_NAMES`), ``x_m``, ``y_m``, ``z_m``, ``visibility``, ``frame``
  (``world`` when the packet places its camera, else ``camera``).
- ``audio_dir``: ``DIR/<participant>.wav`` (16-bit PCM at the recorded rate) and ``DIR/audio.json``
  with each track's start time (ns), rate, channels and length. A gap of more than 0.1 s between
  chunks (lost audio, a muted sender) becomes silence so the track keeps its place in time;
  shorter arrival jitter is ignored. A chunk in another format than the track's first is skipped.
- ``foxglove``: a new MCAP of clouds and skeletons in Foxglove's well-known schemas (JSON
  encoding), which Foxglove Studio shows in its 3D panel; see :mod:`holo.record.foxglove`.

Files are written beside their final name (``.part``) and renamed when complete; existing outputs
are refused unless ``overwrite``. A damaged recording is exported as far as it can be read, and
:attr:`ExportReport.damage` says what was lost (``holo export`` prints it).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import sys
import wave
from dataclasses import dataclass, field
from typing import IO, Any, TextIO

from holo.codec import StreamDecoder
from holo.codec.packet import Packet, Section, unpack_camera, unpack_skeleton
from holo.errors import HoloError, RecordingError
from holo.frame import POSE_JOINT_NAMES, PersonCloud, Skeleton
from holo.ply import write_ply
from holo.record.foxglove import FoxgloveWriter
from holo.record.play import TimeWindow
from holo.record.reader import RecordedMessage, RecordingReader
from holo.record.schemas import safe_name

__all__ = ["ExportReport", "export"]

logger = logging.getLogger(__name__)

AUDIO_GAP_S = 0.1
CSV_COLUMNS = (
    "time_ns",
    "participant",
    "sequence",
    "joint_index",
    "joint_name",
    "x_m",
    "y_m",
    "z_m",
    "visibility",
    "frame",
)


@dataclass(frozen=True, slots=True)
class ExportReport:
    ply_files: int = 0
    skeleton_frames: int = 0
    skeleton_rows: int = 0
    wav_files: dict[str, float] = field(default_factory=dict)  # path -> seconds
    foxglove_messages: int = 0
    skipped_packets: int = 0
    damage: tuple[str, ...] = ()


class _Part:
    """A file written under ``path.part`` and renamed into place on success."""

    def __init__(self, path: str, overwrite: bool) -> None:
        if os.path.exists(path) and not overwrite:
            raise RecordingError(f"{path} already exists; pass --overwrite to replace it")
        parent = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise RecordingError(
                f"cannot create the directory {parent} for {path} ({exc.strerror})"
            ) from None
        self.path = path
        self.part = path + ".part"

    def open_binary(self) -> IO[bytes]:
        try:
            return open(self.part, "wb")
        except OSError as exc:
            raise RecordingError(f"cannot write {self.path} ({exc.strerror})") from None

    def open_text(self) -> TextIO:
        try:
            return open(self.part, "w", newline="", encoding="utf-8")
        except OSError as exc:
            raise RecordingError(f"cannot write {self.path} ({exc.strerror})") from None

    def commit(self) -> None:
        os.replace(self.part, self.path)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.remove(self.part)


def _prepare_dir(path: str, overwrite: bool, what: str) -> None:
    if os.path.exists(path) and not os.path.isdir(path):
        raise RecordingError(f"the {what} directory {path} is a file")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise RecordingError(f"the {what} directory {path} is not empty; pass --overwrite to write into it")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise RecordingError(f"cannot create the {what} directory {path} ({exc.strerror})") from None


class _PlySink:
    def __init__(self, root: str) -> None:
        self.root = root
        self.counts: dict[str, int] = {}
        self.files = 0

    def add(self, cloud: PersonCloud) -> None:
        name = safe_name(cloud.participant)
        n = self.counts.get(name, 0)
        self.counts[name] = n + 1
        folder = os.path.join(self.root, name)
        if n == 0:
            os.makedirs(folder, exist_ok=True)
        write_ply(os.path.join(folder, f"{n:06d}.ply"), cloud, world=True)
        self.files += 1


def _skeleton_of(packet: Packet) -> Skeleton | None:
    data = packet.section(Section.SKELETON)
    if data is None:
        return None
    skeleton = unpack_skeleton(data)
    camera_bytes = packet.section(Section.CAMERA)
    if skeleton.frame == "camera" and camera_bytes is not None:
        camera = unpack_camera(camera_bytes)
        if camera.world_from_camera is not None:
            skeleton = skeleton.transformed(camera.world_from_camera, "world")
    return skeleton


class _CsvSink:
    def __init__(self, part: _Part) -> None:
        self.part = part
        self.file = part.open_text()
        self.writer = csv.writer(self.file)
        self.writer.writerow(CSV_COLUMNS)
        self.frames = 0
        self.rows = 0

    def add(self, packet: Packet, skeleton: Skeleton) -> None:
        for i, name in enumerate(POSE_JOINT_NAMES):
            x, y, z = (float(v) for v in skeleton.joints_m[i])
            self.writer.writerow(
                (
                    packet.capture_time_ns,
                    packet.participant,
                    packet.sequence,
                    i,
                    name,
                    f"{x:.5f}",
                    f"{y:.5f}",
                    f"{z:.5f}",
                    f"{float(skeleton.visibility[i]):.3f}",
                    skeleton.frame,
                )
            )
        self.frames += 1
        self.rows += len(POSE_JOINT_NAMES)

    def close(self, ok: bool) -> None:
        self.file.close()
        if ok:
            self.part.commit()
        else:
            self.part.discard()


@dataclass
class _Track:
    path: str
    wav: wave.Wave_write
    rate: int
    channels: int
    start_ns: int
    samples: int = 0
    silence_s: float = 0.0
    skipped: int = 0


class _WavSink:
    def __init__(self, root: str) -> None:
        self.root = root
        self.tracks: dict[str, _Track] = {}

    def add(self, participant: str, data: bytes, log_time_ns: int) -> None:
        from holo.net.audio import unpack_audio

        chunk = unpack_audio(data)
        t_ns = chunk.time_ns if chunk.time_ns > 0 else log_time_ns
        track = self.tracks.get(participant)
        if track is None:
            path = os.path.join(self.root, f"{safe_name(participant)}.wav")
            w = wave.open(path, "wb")  # noqa: SIM115 - closed in close()
            w.setnchannels(chunk.channels)
            w.setsampwidth(2)
            w.setframerate(chunk.sample_rate)
            track = self.tracks[participant] = _Track(path, w, chunk.sample_rate, chunk.channels, t_ns)
        if (chunk.sample_rate, chunk.channels) != (track.rate, track.channels):
            track.skipped += 1
            return
        expected_ns = track.start_ns + track.samples * 1_000_000_000 // track.rate
        gap_s = (t_ns - expected_ns) / 1e9
        if gap_s > AUDIO_GAP_S:
            silence = int(gap_s * track.rate)
            track.wav.writeframes(bytes(silence * track.channels * 2))
            track.samples += silence
            track.silence_s += silence / track.rate
        track.wav.writeframes(chunk.pcm.astype("<i2").tobytes())
        track.samples += chunk.pcm.shape[0]

    def close(self) -> dict[str, float]:
        out: dict[str, float] = {}
        index: dict[str, Any] = {}
        for name, t in self.tracks.items():
            t.wav.close()
            seconds = t.samples / t.rate
            out[t.path] = seconds
            index[name] = {
                "file": os.path.basename(t.path),
                "start_time_ns": t.start_ns,
                "sample_rate": t.rate,
                "channels": t.channels,
                "seconds": seconds,
                "silence_inserted_s": t.silence_s,
                "chunks_skipped_other_format": t.skipped,
            }
            if t.skipped:
                logger.warning(
                    "%s: skipped %d audio chunks in another format than the first", t.path, t.skipped
                )
        if index:
            with open(os.path.join(self.root, "audio.json"), "w", encoding="utf-8") as f:
                json.dump(index, f, indent=2)
        return out


def export(
    path: str,
    *,
    ply_dir: str | None = None,
    skeleton_csv: str | None = None,
    audio_dir: str | None = None,
    foxglove: str | None = None,
    participants: tuple[str, ...] | None = None,
    from_s: float | None = None,
    to_s: float | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> ExportReport:
    """Write the requested exports of ``path`` (see the module docstring); returns what was written."""
    if not (ply_dir or skeleton_csv or audio_dir or foxglove):
        raise RecordingError(
            "nothing to export: give --ply DIR, --skeleton-csv FILE, --audio DIR or --foxglove FILE"
        )
    window = TimeWindow(from_s, to_s)
    reader = RecordingReader(path, recover=True)
    csv_part = _Part(skeleton_csv, overwrite) if skeleton_csv else None
    fox_part = _Part(foxglove, overwrite) if foxglove else None
    if ply_dir:
        _prepare_dir(ply_dir, overwrite, "PLY")
    if audio_dir:
        _prepare_dir(audio_dir, overwrite, "audio")
    ply = _PlySink(ply_dir) if ply_dir else None
    wav = _WavSink(audio_dir) if audio_dir else None
    table: _CsvSink | None = None
    fox: FoxgloveWriter | None = None
    fox_file: IO[bytes] | None = None
    decoder = StreamDecoder()
    skipped = 0
    ok = False
    from tqdm import tqdm

    bar = tqdm(
        total=reader.file_bytes,
        unit="B",
        unit_scale=True,
        desc="export",
        disable=(not sys.stderr.isatty()) if progress is None else not progress,
        leave=False,
    )
    try:
        table = _CsvSink(csv_part) if csv_part else None
        if fox_part is not None:
            fox_file = fox_part.open_binary()
            fox = FoxgloveWriter(fox_file)
        want_cloud = ply is not None or fox is not None
        want_skeleton = table is not None or fox is not None
        done = 0
        for m in reader.messages():
            if reader.readable_bytes > done:
                bar.update(reader.readable_bytes - done)
                done = reader.readable_bytes
            if participants and m.participant not in participants:
                continue
            if m.kind not in ("cloud", "audio"):
                continue
            verdict = window.admit(m, reader.first_log_ns or m.log_time_ns)
            if verdict is None:
                break
            if not verdict:
                continue
            try:
                if m.kind == "audio":
                    if wav is not None:
                        wav.add(m.participant, m.data, m.log_time_ns)
                    continue
                _export_cloud(m, decoder, ply, table, fox, want_cloud, want_skeleton)
            except HoloError as exc:
                skipped += 1
                logger.warning("skipped a damaged %s message on %s: %s", m.kind, m.topic, exc)
        ok = True
    except OSError as exc:
        raise RecordingError(f"writing the export failed ({exc.strerror or exc})") from None
    finally:
        bar.close()
        if table is not None:
            table.close(ok)
        if fox_part is not None and fox_file is not None:
            try:
                if ok and fox is not None:
                    fox.finish()
            finally:
                fox_file.close()
            if ok:
                fox_part.commit()
            else:
                fox_part.discard()
        wav_files = wav.close() if wav is not None else {}
        reader.close()
    return ExportReport(
        ply_files=ply.files if ply else 0,
        skeleton_frames=table.frames if table else 0,
        skeleton_rows=table.rows if table else 0,
        wav_files=wav_files,
        foxglove_messages=fox.messages if fox else 0,
        skipped_packets=skipped,
        damage=tuple(d.reason for d in reader.damage),
    )


def _export_cloud(
    m: RecordedMessage,
    decoder: StreamDecoder,
    ply: _PlySink | None,
    table: _CsvSink | None,
    fox: FoxgloveWriter | None,
    want_cloud: bool,
    want_skeleton: bool,
) -> None:
    packet = Packet.parse(m.data)
    if want_cloud:
        cloud = decoder.decode(packet).in_world()
        if ply is not None:
            ply.add(cloud)
        if fox is not None:
            fox.add_cloud(cloud, m.log_time_ns)
    if want_skeleton:
        skeleton = _skeleton_of(packet)
        if skeleton is not None:
            if table is not None:
                table.add(packet, skeleton)
            if fox is not None:
                fox.add_skeleton(packet, skeleton, m.log_time_ns)
