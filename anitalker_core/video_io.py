"""Writing the animation as an H.264 mp4 with the speech muxed in sync (PyAV).

Frames arrive in batches so a minutes-long clip never has to sit in memory as one tensor.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from .errors import AniTalkerError

log = logging.getLogger(__name__)


def _to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(B,H,W,3) float 0..1 -> contiguous uint8 array, rounded like PIL's ToPILImage (x*255 truncated)."""
    return frames.clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()


class Mp4Writer:
    """Streams frame batches into an H.264 mp4 and adds one audio track (AAC) at the end.

    Even sizes are required by yuv420p; odd sizes are padded by one pixel (edge replicated).
    """

    def __init__(self, path: str | Path, fps: int = 25, crf: int = 18):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = fps
        self.crf = crf
        self._container = av.open(str(self.path), mode="w")
        self._video = None
        self._audio = None
        self.frames_written = 0

    def add_audio_stream(self, sample_rate: int, channels: int) -> None:
        self._audio = self._container.add_stream("aac", rate=int(sample_rate))
        self._audio.layout = "stereo" if channels >= 2 else "mono"
        self._audio_rate = int(sample_rate)
        self._audio_channels = 2 if channels >= 2 else 1

    def _open_video(self, height: int, width: int) -> None:
        stream = self._container.add_stream("libx264", rate=Fraction(self.fps, 1))
        stream.width = width + (width % 2)
        stream.height = height + (height % 2)
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(self.crf), "preset": "medium"}
        self._video = stream

    def write(self, frames: torch.Tensor) -> None:
        """frames: (B,H,W,3) float in 0..1."""
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise AniTalkerError(f"video frames must be (B,H,W,3), got {tuple(frames.shape)}")
        if self._video is None:
            self._open_video(int(frames.shape[1]), int(frames.shape[2]))
        arr = _to_uint8(frames)
        pad_h = self._video.height - arr.shape[1]
        pad_w = self._video.width - arr.shape[2]
        if pad_h or pad_w:
            arr = np.pad(arr, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        for image in arr:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in self._video.encode(frame):
                self._container.mux(packet)
            self.frames_written += 1

    def write_audio(self, waveform: torch.Tensor, sample_rate: int) -> None:
        """waveform (C,T) float in -1..1, cut to the video's length so both end together."""
        if self._audio is None:
            self.add_audio_stream(sample_rate, int(waveform.shape[0]))
        wave = waveform[: self._audio_channels]
        if wave.shape[0] < self._audio_channels:
            wave = wave.expand(self._audio_channels, -1)
        if self.frames_written:
            wave = wave[:, : round(self.frames_written * sample_rate / self.fps)]
        data = np.ascontiguousarray(wave.clamp(-1, 1).to(torch.float32).cpu().numpy())
        frame = av.AudioFrame.from_ndarray(data, format="fltp", layout=self._audio.layout.name)
        frame.sample_rate = int(sample_rate)
        frame.pts = 0
        frame.time_base = Fraction(1, int(sample_rate))
        for packet in self._audio.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        if self._video is not None:
            for packet in self._video.encode():
                self._container.mux(packet)
        if self._audio is not None:
            for packet in self._audio.encode():
                self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.close()
        finally:
            if exc_type is not None:
                self.path.unlink(missing_ok=True)
