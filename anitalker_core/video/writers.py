"""Writing the animation: a compressed video (H.264 or AV1 in mp4, mkv or WebM, see ``encoding``) or a ProRes
4444 mov (with the matte as alpha), with the speech muxed in sync; image sequences are in ``frame_sequence``.

Frames arrive in batches so a minutes-long clip never has to sit in memory as one tensor. A file is written
under a temporary name and renamed when complete, so a crash or a cancel never leaves half a video under the
name the user asked for.
"""

from __future__ import annotations

import json
import queue
import threading
import wave
from fractions import Fraction
from pathlib import Path
from typing import IO, Optional, Protocol, Union

import av
import numpy as np
import torch

from ..audio.tracks import as_channels
from ..errors import AniTalkerError
from ..image.pixels import SAMPLE_TYPES, convert_samples, to_samples
from ..types import FPS
from .encoding import MP4, VideoEncoding

AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
"""Sample rates AAC can carry; other rates are resampled to 48 kHz for the mp4."""

Frames = Union[torch.Tensor, np.ndarray]
"""A batch (B,H,W,3), or (B,H,W,4) with the matte as the fourth channel: float 0..1 (tensor) or samples (array:
uint8, uint16 or float32, as the streaming compositor makes them)."""


def frame_samples(frames: Frames) -> np.ndarray:
    """A batch as a samples array (B,H,W,3|4), refused with a clear message when it is none."""
    if isinstance(frames, torch.Tensor):
        arr = to_samples(frames, "float32")
    elif isinstance(frames, np.ndarray):
        arr = frames
    else:
        raise AniTalkerError(f"video frames must be a tensor or an array, got {type(frames).__name__}")
    if arr.ndim != 4 or arr.shape[-1] not in (3, 4) or arr.dtype.name not in SAMPLE_TYPES:
        raise AniTalkerError(f"video frames must be (B,H,W,3) or (B,H,W,4) samples, got {arr.shape} {arr.dtype}")
    return arr


def audio_for_mux(waveform: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, int]:
    """ComfyUI AUDIO's [B,C,T] (first clip) or [C,T] at any rate -> ([C,T] float, a rate AAC supports)."""
    waveform = as_channels(waveform)
    if sample_rate not in AAC_RATES:
        from ..audio.waveform import resample

        waveform = resample(waveform, int(sample_rate), 48000)
        sample_rate = 48000
    return waveform, int(sample_rate)


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.stem}.partial{path.suffix}")


class VideoWriter(Protocol):
    """Where rendered frames go: written under a temporary name and renamed when closed; ``abort`` leaves
    nothing under the final name."""

    def add_audio_stream(self, sample_rate: int, channels: int) -> None: ...

    def write(self, frames: Frames) -> None: ...

    def write_audio(self, waveform: torch.Tensor, sample_rate: int) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


def frame_rate(fps: Union[int, float, Fraction]) -> Fraction:
    """A frame rate as the exact fraction a container stores: 25 -> 25/1, 29.97 -> 30000/1001."""
    rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise AniTalkerError(f"the frame rate must be positive, got {fps!r}")
    return rate


class _MuxedWriter:
    """Streams frame batches into one video track of a container and adds one audio track at the end.

    ``path`` may also be a binary file object (ComfyUI asks for a stream that way). ``metadata`` values are stored
    as container tags (non-strings as JSON), the way ComfyUI stores the workflow in its videos.
    """

    FORMAT = ""
    AUDIO_CODEC = ""

    def __init__(self, path: Union[str, Path, IO[bytes]], fps: Union[int, float, Fraction] = FPS,
                 metadata: Optional[dict] = None, options: Optional[dict] = None) -> None:
        self.fps = frame_rate(fps)
        if isinstance(path, (str, Path)):
            self.path: Optional[Path] = Path(path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._target = _partial(self.path)
            self._container = av.open(str(self._target), mode="w", format=self.FORMAT, options=options or {})
        else:
            self.path = self._target = None
            self._container = av.open(path, mode="w", format=self.FORMAT, options=options or {})
        for key, value in (metadata or {}).items():
            self._container.metadata[str(key)] = value if isinstance(value, str) else json.dumps(value)
        self._video = None
        self._audio = None
        self._audio_rate = 0
        self.frames_written = 0

    def _audio_stream_rate(self, sample_rate: int) -> int:
        """The rate the audio track is stored at (a codec may accept only some)."""
        return int(sample_rate)

    def add_audio_stream(self, sample_rate: int, channels: int) -> None:
        self._audio_rate = self._audio_stream_rate(sample_rate)
        self._audio = self._container.add_stream(self.AUDIO_CODEC, rate=self._audio_rate)
        self._audio.layout = "stereo" if channels >= 2 else "mono"
        self._audio_channels = 2 if channels >= 2 else 1

    def _open_video(self, height: int, width: int) -> None:
        raise NotImplementedError

    def _encode(self, images: np.ndarray) -> None:
        """Each frame of a batch of samples (n,H,W,C) into the video track."""
        raise NotImplementedError

    def write(self, frames: Frames) -> None:
        arr = frame_samples(frames)
        if self._video is None:
            self._open_video(int(arr.shape[1]), int(arr.shape[2]))
        self._encode(arr)

    def _mux(self, frame: Optional[av.VideoFrame]) -> None:
        for packet in self._video.encode(frame):
            self._container.mux(packet)

    def write_audio(self, waveform: torch.Tensor, sample_rate: int) -> None:
        """waveform (C,T) float in -1..1, cut to the video's length so both end together."""
        if self._audio is None:
            self.add_audio_stream(sample_rate, int(waveform.shape[0]))
        wave_ = waveform[: self._audio_channels]
        if wave_.shape[0] < self._audio_channels:
            wave_ = wave_.expand(self._audio_channels, -1)
        if int(sample_rate) != self._audio_rate:
            from ..audio.waveform import resample

            wave_, sample_rate = resample(wave_.float(), int(sample_rate), self._audio_rate), self._audio_rate
        if self.frames_written:
            wave_ = wave_[:, : round(self.frames_written * sample_rate / self.fps)]
        data = np.ascontiguousarray(wave_.clamp(-1, 1).to(torch.float32).cpu().numpy())
        frame = av.AudioFrame.from_ndarray(data, format="fltp", layout=self._audio.layout.name)
        frame.sample_rate = int(sample_rate)
        frame.pts = 0
        frame.time_base = Fraction(1, int(sample_rate))
        for packet in self._audio.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        if self._video is not None:
            self._mux(None)
        if self._audio is not None:
            for packet in self._audio.encode():
                self._container.mux(packet)
        self._container.close()
        if self.path is not None:
            self._target.replace(self.path)

    def abort(self) -> None:
        try:
            self._container.close()
        finally:
            if self.path is not None:
                self._target.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.close()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()


OPUS_RATE = 48000
"""Opus (WebM's audio) is coded at 48 kHz whatever the source's rate."""


class EncodedVideoWriter(_MuxedWriter):
    """A compressed video as ``encoding`` says (H.264 or AV1, 8 or 10 bits 4:2:0, in mp4, mkv or WebM), with the
    audio as AAC (Opus in WebM). Colour is converted with the BT.709 matrix and tagged so (sRGB pictures are what
    video calls BT.709). 4:2:0 needs even sizes: an odd size is padded by one pixel (edge replicated). A matte
    channel is dropped."""

    def __init__(self, path: Union[str, Path, IO[bytes]], fps: Union[int, float, Fraction] = FPS,
                 encoding: VideoEncoding = MP4, metadata: Optional[dict] = None) -> None:
        self.encoding = encoding.check()
        self.FORMAT, self.AUDIO_CODEC = encoding.muxer, encoding.audio_codec
        options = {"movflags": "use_metadata_tags"} if encoding.container == "mp4" else {}
        super().__init__(path, fps, metadata, options=options)

    def _audio_stream_rate(self, sample_rate: int) -> int:
        return OPUS_RATE if self.AUDIO_CODEC == "libopus" else int(sample_rate)

    def _open_video(self, height: int, width: int) -> None:
        stream = self._container.add_stream(self.encoding.encoder, rate=self.fps)
        stream.width = width + (width % 2)
        stream.height = height + (height % 2)
        stream.pix_fmt = self.encoding.pix_fmt
        stream.options = self.encoding.encoder_options()
        codec = stream.codec_context
        codec.colorspace = codec.color_primaries = codec.color_trc = 1  # BT.709
        codec.color_range = 1  # limited ("video") range, what players expect of 4:2:0 video
        self._video = stream

    def _encode(self, images: np.ndarray) -> None:
        deep = self.encoding.bit_depth > 8
        arr = convert_samples(frame_samples(images)[..., :3], "uint16" if deep else "uint8")
        pad_h = self._video.height - arr.shape[1]
        pad_w = self._video.width - arr.shape[2]
        if pad_h < 0 or pad_w < 0 or pad_h > 1 or pad_w > 1:
            raise AniTalkerError(f"frame size changed mid-video: {arr.shape[2]}x{arr.shape[1]} after "
                                 f"{self._video.width}x{self._video.height}")
        if pad_h or pad_w:
            arr = np.pad(arr, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        for image in arr:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb48le" if deep else "rgb24")
            frame = frame.reformat(format=self._video.pix_fmt, src_colorspace="ITU709", dst_colorspace="ITU709",
                                   dst_color_range="MPEG")
            self._mux(frame)
            self.frames_written += 1


class Mp4Writer(EncodedVideoWriter):
    """H.264 (8 bits 4:2:0) with AAC audio in an mp4: what the command writes and Save Video asks for."""

    def __init__(self, path: Union[str, Path, IO[bytes]], fps: Union[int, float, Fraction] = FPS,
                 crf: Optional[float] = None, metadata: Optional[dict] = None, preset: Optional[str] = None):
        super().__init__(path, fps, VideoEncoding(crf=crf, preset=preset), metadata)


PRORES_ALPHA_LEVELS = 1023
"""The alpha plane handed to the ProRes encoder has 10 bits, like its colour."""


class ProResWriter(_MuxedWriter):
    """Apple ProRes 4444 in a QuickTime mov, with 16-bit PCM audio: what compositing and editing software imports
    directly. ``alpha``: the matte (the frames' fourth channel) becomes the alpha channel, straight (colour not
    premultiplied). Colour goes through BT.709 (tagged so) at 10 bits, 4:4:4.

    The alpha plane is quantised here rather than by the colour converter, which truncates 16-bit alpha to 10 bits
    (an error up to a whole level); this way it decodes back within half a 10-bit level of the matte.
    """

    FORMAT = "mov"
    AUDIO_CODEC = "pcm_s16le"
    PROFILE = "4444"

    def __init__(self, path: Union[str, Path, IO[bytes]], fps: Union[int, float, Fraction] = FPS,
                 alpha: bool = False, metadata: Optional[dict] = None) -> None:
        self.alpha = alpha
        super().__init__(path, fps, metadata)

    def _open_video(self, height: int, width: int) -> None:
        stream = self._container.add_stream("prores_ks", rate=self.fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuva444p10le" if self.alpha else "yuv444p10le"
        stream.options = {"profile": self.PROFILE, "vendor": "apl0", **({"alpha_bits": "16"} if self.alpha else {})}
        codec = stream.codec_context
        codec.colorspace = codec.color_primaries = codec.color_trc = 1  # BT.709
        codec.color_range = 1  # limited ("video") range, as ProRes stores it
        self._video = stream

    def _encode(self, images: np.ndarray) -> None:
        if (images.shape[2], images.shape[1]) != (self._video.width, self._video.height):
            raise AniTalkerError(f"frame size changed mid-video: {images.shape[2]}x{images.shape[1]} after "
                                 f"{self._video.width}x{self._video.height}")
        if self.alpha and images.shape[-1] != 4:
            raise AniTalkerError("these frames carry no matte (only Render Video's clips and the headless "
                                 "command's renders do), so the ProRes file cannot have alpha; turn alpha off")
        samples = convert_samples(images, "uint16")
        for image in samples:
            rgba = np.ascontiguousarray(image if self.alpha else image[..., :3])
            frame = av.VideoFrame.from_ndarray(rgba, format="rgba64le" if self.alpha else "rgb48le")
            frame = frame.reformat(format=self._video.pix_fmt, src_colorspace="ITU709", dst_colorspace="ITU709",
                                   dst_color_range="MPEG")
            if self.alpha:
                plane = frame.planes[3]
                rows = np.frombuffer(plane, dtype=np.uint16).reshape(plane.height, -1)
                levels = image[..., 3].astype(np.float32) * (PRORES_ALPHA_LEVELS / 65535)
                rows[:, : plane.width] = np.rint(levels).astype(np.uint16)
            self._mux(frame)
            self.frames_written += 1


def write_wav(path: Union[str, Path], waveform: torch.Tensor, sample_rate: int) -> Path:
    """(C,T) float -1..1 -> 16-bit PCM WAV (the format every compositor reads)."""
    path = Path(path)
    pcm = (waveform.detach().float().clamp(-1, 1) * 32767).round().to(torch.int16).T.contiguous()
    with wave.open(str(path), "wb") as f:
        f.setnchannels(int(waveform.shape[0]))
        f.setsampwidth(2)
        f.setframerate(int(sample_rate))
        f.writeframes(pcm.numpy().tobytes())
    return path


class BackgroundWriter:
    """Runs a writer's ``write`` on a thread, so encoding (PyAV and PIL release the GIL) overlaps rendering.

    At most ``depth`` batches wait in the queue, so memory stays a few batches whatever the clip's length.
    An error in the thread is raised again in the caller at the next write or at ``finish``.
    """

    def __init__(self, writer, depth: int = 2) -> None:
        self.writer = writer
        self._queue: "queue.Queue" = queue.Queue(maxsize=max(1, depth))
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="anitalker-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self.writer.write(item)
                except BaseException as exc:  # handed to the caller
                    self._error = exc

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, frames: Frames) -> None:
        self._check()
        self._queue.put(frames)

    def finish(self) -> None:
        """Wait for every queued batch to be written (raising the thread's error, if any)."""
        self._queue.put(None)
        self._thread.join()
        self._check()
