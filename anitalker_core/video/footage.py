"""Footage read a few frames at a time: a video file the pack pastes a talking head into, at any length.

The footage is seen as a sequence of frames at a constant rate (its average rate), whatever its encoder did: a
variable-rate file shows, at the time of each of those frames, the frame its timestamps say is on screen then. Any
frame can be asked for, in any order (a dub plays the footage forward and backward): frames are decoded forward
from the nearest key frame and kept in a small cache whose size is bounded in bytes, so reading back costs a few
decodes per frame and memory stays that of a few frames whatever the length.

``FootageFile`` reads a file (or bytes) with PyAV; ``FootageFrames`` serves frames already in memory (what a
VIDEO made of images gives).
"""

from __future__ import annotations

import io
import math
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path
from typing import IO, Iterator, Optional, Protocol, Sequence, Union

import av
import numpy as np
import torch

from ..audio.tracks import Track
from ..errors import AniTalkerError
from ..image.pixels import to_uint8

CACHE_BYTES = 256 * 2**20
"""Decoded frames kept at once (uint8 RGB): about 40 frames of 1080p footage, 10 of 4K."""
SEEK_AHEAD = 16
"""Frames decoded forward rather than seeking when the one asked for lies this close ahead."""
TIME_TOLERANCE = 1e-4
"""Seconds by which a frame may start late and still be the one on screen at a time (timestamps are rounded)."""

Source = Union[str, Path, IO[bytes]]


class Footage(Protocol):
    """Frames of a shot at a constant rate, each RGB uint8 (H,W,3)."""

    width: int
    height: int
    fps: Fraction
    frame_count: int

    def frames(self, indices: Sequence[int], max_side: Optional[int] = None) -> np.ndarray:
        """(n,H,W,3) uint8 of these frames (any order, repeats allowed); ``max_side``: shrunk so that the longer
        side is at most that many pixels (for detection)."""
        ...

    def audio(self) -> Optional[Track]: ...


def shrunk_size(width: int, height: int, max_side: Optional[int]) -> tuple[int, int]:
    """(width, height) scaled down to ``max_side`` on the longer side (even, at least 2), or as it is."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


class FootageFile:
    """A video file as ``Footage``: its first video stream, from ``start_s`` for ``duration_s`` (0: to the end)."""

    def __init__(self, source: Source, start_s: float = 0.0, duration_s: float = 0.0,
                 cache_bytes: int = CACHE_BYTES) -> None:
        self.source = source
        self._container = self._open()
        streams = self._container.streams.video
        if not streams:
            raise AniTalkerError(f"{self._name()} has no video stream; give a video file (mp4, mov, mkv, webm ...)")
        self._stream = streams[0]
        self._stream.thread_type = "AUTO"
        self.width, self.height = int(self._stream.width), int(self._stream.height)
        pts = self._timestamps()
        base = self._stream.time_base or Fraction(1, 90000)
        times = np.array(sorted(pts), dtype=np.float64) * float(base)
        if start_s or duration_s:
            start = float(start_s) if start_s >= 0 else max(times[-1] + float(start_s), 0.0) if len(times) else 0.0
            end = start + float(duration_s) if duration_s else math.inf
            keep = (times >= start - TIME_TOLERANCE) & (times < end - TIME_TOLERANCE)
            self._first = int(np.argmax(keep)) if keep.any() else len(times)
            times = times[keep]
        else:
            self._first = 0
        if len(times) == 0:
            where = " in the trimmed window" if start_s or duration_s else ""
            raise AniTalkerError(f"{self._name()} has no video frames{where}")
        self.fps = self._rate(times)
        self._times = times - times[0]
        self._pts = sorted(pts)[self._first: self._first + len(times)]
        span = float(self._times[-1]) * float(self.fps)
        self.frame_count = int(math.floor(span + TIME_TOLERANCE)) + 1
        grid = np.arange(self.frame_count) / float(self.fps)
        self._shown = np.searchsorted(self._times, grid + TIME_TOLERANCE, side="right") - 1
        """For each frame at the constant rate, the decoded frame on screen at its time."""
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_frames = max(2, cache_bytes // max(1, self.width * self.height * 3))
        self._decoder: Optional[Iterator[av.VideoFrame]] = None
        self._next = 0  # the decoded frame (by index) the open decoder yields next

    def _name(self) -> str:
        return str(self.source) if isinstance(self.source, (str, Path)) else "the video"

    def _open(self):
        if isinstance(self.source, (str, Path)) and not Path(self.source).is_file():
            raise AniTalkerError(f"footage {self.source} does not exist")
        if isinstance(self.source, (io.BytesIO, io.BufferedIOBase)) or hasattr(self.source, "read"):
            self.source.seek(0)
        try:
            return av.open(self.source if not isinstance(self.source, Path) else str(self.source), mode="r")
        except (av.error.FFmpegError, OSError) as exc:
            raise AniTalkerError(f"{self._name()} could not be read as a video ({exc}); give an mp4, mov, mkv or "
                                 "webm file") from exc

    def _timestamps(self) -> list[int]:
        """Every video frame's presentation time, read from the packets (no decoding)."""
        pts = [p.pts for p in self._container.demux(self._stream) if p.pts is not None]
        self._container.seek(0)
        if not pts:  # a raw stream without timestamps: count decoded frames at the nominal rate
            rate = self._stream.average_rate or Fraction(25)
            count = sum(1 for _ in self._container.decode(self._stream))
            self._container.seek(0)
            step = 1 / (rate * (self._stream.time_base or Fraction(1, 90000)))
            pts = [round(i * step) for i in range(count)]
        return pts

    def _rate(self, times: np.ndarray) -> Fraction:
        rate = self._stream.average_rate or self._stream.guessed_rate
        if rate:
            return Fraction(rate).limit_denominator(1001)
        if len(times) > 1 and times[-1] > times[0]:
            return Fraction((len(times) - 1) / (times[-1] - times[0])).limit_denominator(1001)
        return Fraction(25)

    @property
    def duration_s(self) -> float:
        return self.frame_count / float(self.fps)

    def _decoded(self, index: int) -> np.ndarray:
        """Decoded frame ``index`` (by presentation order within the window) as RGB uint8."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        if self._decoder is None or not (self._next <= index < self._next + SEEK_AHEAD):
            self._seek(index)
        while True:
            try:
                frame = next(self._decoder)
            except StopIteration:
                raise AniTalkerError(f"{self._name()} ended before frame {index}; the file may be damaged") from None
            if frame.pts is None:
                continue
            found = self._index_of(frame.pts)
            if found is None:
                continue
            self._next = found + 1
            if found >= index - self._cache_frames:
                rgb = self._keep(found, frame.to_ndarray(format="rgb24"))
                if found >= index:  # the frame itself, or the next one where the file lacks it
                    return self._cache[index] if index in self._cache else self._keep(index, rgb)

    def _index_of(self, pts: int) -> Optional[int]:
        i = int(np.searchsorted(self._pts, pts))
        return i if i < len(self._pts) and self._pts[i] == pts else None

    def _seek(self, index: int) -> None:
        self._container.seek(int(self._pts[index]), stream=self._stream, backward=True)
        self._decoder = self._container.decode(self._stream)
        self._next = -1

    def _keep(self, index: int, rgb: np.ndarray) -> np.ndarray:
        self._cache[index] = rgb
        self._cache.move_to_end(index)
        while len(self._cache) > self._cache_frames:
            self._cache.popitem(last=False)
        return rgb

    def frames(self, indices: Sequence[int], max_side: Optional[int] = None) -> np.ndarray:
        size = shrunk_size(self.width, self.height, max_side)
        out = np.empty((len(indices), size[1], size[0], 3), dtype=np.uint8)
        for k, j in enumerate(indices):
            if not 0 <= int(j) < self.frame_count:
                raise AniTalkerError(f"frame {int(j)} is past the footage's {self.frame_count} frames")
            rgb = self._decoded(int(self._shown[int(j)]))
            out[k] = rgb if size == (self.width, self.height) else _resized(rgb, size)
        return out

    def audio(self) -> Optional[Track]:
        """The footage's sound over its window (channels, samples) float32, or None when it has none."""
        container = self._open()
        try:
            streams = [s for s in container.streams.audio if s.codec_context is not None]
            if not streams:
                return None
            stream = streams[0]
            resampler = av.AudioResampler(format="fltp", rate=stream.rate)
            parts = [f.to_ndarray() for packet in container.demux(stream) for frame in packet.decode()
                     for f in resampler.resample(frame)]
            parts += [f.to_ndarray() for f in resampler.resample(None)]
        finally:
            container.close()
        if not parts:
            return None
        wave = torch.from_numpy(np.concatenate(parts, axis=1).astype(np.float32))
        rate = int(stream.rate)
        start = round(self._start_s() * rate)
        return wave[:, start: start + round(self.duration_s * rate)], rate

    def _start_s(self) -> float:
        base = float(self._stream.time_base or Fraction(1, 90000))
        return float(self._pts[0]) * base - (float(self._stream.start_time or 0) * base)

    def close(self) -> None:
        self._container.close()


class FootageFrames:
    """Frames already in memory (T,H,W,3) float 0..1 (a VIDEO made of images) as ``Footage``."""

    def __init__(self, images: torch.Tensor, fps: Union[float, Fraction], audio: Optional[Track] = None) -> None:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] not in (3, 4):
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise AniTalkerError(f"footage frames must be (frames, height, width, 3), got {shape}")
        if images.shape[0] == 0:
            raise AniTalkerError("the footage has no frames; connect a video with at least one frame")
        self.images = images
        self.height, self.width = int(images.shape[1]), int(images.shape[2])
        self.fps = Fraction(fps).limit_denominator(1001)
        self.frame_count = int(images.shape[0])
        self._audio = audio

    def frames(self, indices: Sequence[int], max_side: Optional[int] = None) -> np.ndarray:
        picked = to_uint8(self.images[torch.as_tensor(list(indices), dtype=torch.long), :, :, :3])
        size = shrunk_size(self.width, self.height, max_side)
        return picked if size == (self.width, self.height) else np.stack([_resized(f, size) for f in picked])

    def audio(self) -> Optional[Track]:
        return self._audio


def _resized(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
