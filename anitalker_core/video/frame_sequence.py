"""Numbered image files for compositing: PNG (8 or 16 bits), EXR (half float) or JPEG, the matte as an alpha
channel or as its own sequence, the speech as ``audio.wav`` and a JSON sidecar saying how it all lines up.

The sequence is written into a hidden temporary folder beside the one asked for and renamed into place when the
last file is complete, so a cancel or a crash never leaves half a sequence under the final name.

Writers: PIL for 8-bit PNG and JPEG; OpenCV for 16-bit PNG (PIL writes 16 bits only for grey images); FFmpeg's EXR
encoder through PyAV for EXR. PyAV is already the pack's video library, so EXR costs no new dependency and leaves
the process's environment alone: OpenCV's EXR codec stays off unless ``OPENCV_IO_ENABLE_OPENEXR`` is set for the
whole process (ComfyUI's included) before its first use.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from ..errors import AniTalkerError
from ..image.pixels import convert_samples
from ..types import FPS
from .video_render import OutputPixels
from .writers import Frames, frame_samples, write_wav

FRAME_FORMATS = ("png", "png16", "exr", "jpg")
MATTES = ("none", "alpha", "separate")
"""none: colour only; alpha: the matte as the frames' alpha channel; separate: a matte_<number>.png sequence."""
SEQUENCE_SAMPLES = {"png": "uint8", "png16": "uint16", "exr": "float32", "jpg": "uint8"}
SUFFIXES = {"png": "png", "png16": "png", "exr": "exr", "jpg": "jpg"}
DESCRIPTIONS = {"png": "PNG, 8 bits per channel", "png16": "PNG, 16 bits per channel",
                "exr": "OpenEXR, half float, ZIP compression", "jpg": "JPEG, quality 95"}

PNG_COMPRESSION = 3
"""zlib level of 8-bit PNGs: large frames at level 6 (PIL's default) take several times longer for a few % less disk."""
PNG16_COMPRESSION = 1
"""zlib level of 16-bit PNGs: their low bytes hardly compress; level 3 took 40 % longer here for 2 % less disk."""
JPEG_QUALITY = 95
EXR_OPTIONS = {"format": "half", "compression": "zip16"}
"""Half floats (11 significant bits: finer than 16-bit integers below 1/8) in 16-line ZIP blocks, the usual EXR."""
DIGITS = 6
"""Frame numbers are zero-padded to this many digits (frame_001001.png)."""
MAX_FIRST_FRAME = 10**7
SIDECAR = "sequence.json"
AUDIO = "audio.wav"
MATTE_NAME = "matte"


@dataclass(frozen=True)
class SequenceOptions:
    """How a frame sequence is written; the defaults are the pack's defaults everywhere."""

    format: str = "png"
    """One of ``FRAME_FORMATS``."""
    matte: str = "none"
    """One of ``MATTES``."""
    first_frame: int = 1
    """The number of the first file (compositors often start at 1001)."""
    head_only: bool = False
    """The rendered head alone over transparency instead of the head pasted into the picture."""

    def check(self) -> "SequenceOptions":
        if self.format not in FRAME_FORMATS:
            raise AniTalkerError(f"frame format {self.format!r} is not one of: {', '.join(FRAME_FORMATS)}")
        if self.matte not in MATTES:
            raise AniTalkerError(f"matte {self.matte!r} is not one of: {', '.join(MATTES)}")
        if self.format == "jpg" and self.matte == "alpha":
            raise AniTalkerError("JPEG has no alpha channel, so matte 'alpha' cannot be written as jpg; use matte "
                                 "'separate' (a matte_<number>.png sequence) or the format png, png16 or exr")
        if self.head_only and self.matte == "none":
            raise AniTalkerError("head only needs a matte to say where the head is: set matte to 'alpha' or "
                                 "'separate'")
        first = self.first_frame
        if isinstance(first, bool) or not isinstance(first, int) or not 0 <= first <= MAX_FIRST_FRAME:
            raise AniTalkerError(f"first frame {first!r} must be a whole number from 0 to {MAX_FIRST_FRAME}")
        return self

    @property
    def pixels(self) -> OutputPixels:
        return OutputPixels(SEQUENCE_SAMPLES[self.format], self.matte != "none", self.head_only)

    @property
    def alpha(self) -> Optional[str]:
        """How colour relates to alpha in the files: EXR's convention is colour premultiplied by alpha, PNG's is
        straight colour. Only the head alone is a layer in that sense; a whole picture keeps its colours."""
        if self.matte != "alpha":
            return None
        return "premultiplied" if self.format == "exr" and self.head_only else "straight"


def _exr(image: np.ndarray) -> bytes:
    """float32 (H,W,3|4) -> an EXR file of half floats."""
    import av

    height, width, channels = image.shape
    # FFmpeg's encoder truncates to half precision; values already exact in half pass through unchanged, so
    # rounding here first gives the nearest half
    values = np.ascontiguousarray(image.astype(np.float16).astype(np.float32))
    fmt = "gbrapf32le" if channels == 4 else "gbrpf32le"
    context = av.CodecContext.create("exr", "w")
    context.width, context.height, context.pix_fmt = width, height, fmt
    context.time_base = Fraction(1, FPS)
    context.options = dict(EXR_OPTIONS)
    packets = context.encode(av.VideoFrame.from_ndarray(values, format=fmt)) + context.encode(None)
    return b"".join(bytes(p) for p in packets)


def _png16(image: np.ndarray) -> bytes:
    import cv2

    order = [2, 1, 0, 3][: image.shape[-1]] if image.ndim == 3 else None  # OpenCV keeps colours as BGR(A)
    pixels = image[..., order] if order else image
    ok, data = cv2.imencode(".png", np.ascontiguousarray(pixels), [cv2.IMWRITE_PNG_COMPRESSION, PNG16_COMPRESSION])
    if not ok:
        raise AniTalkerError(f"OpenCV could not encode a 16-bit PNG of shape {image.shape}")
    return data.tobytes()


def encode_image(image: np.ndarray, format: str) -> bytes:
    """One frame (H,W,3|4) or matte (H,W), any sample type -> the bytes of its file in ``format``."""
    from PIL import Image

    if format == "png16":
        return _png16(convert_samples(image, "uint16"))
    if format == "exr":
        return _exr(convert_samples(image, "float32"))
    buffer = io.BytesIO()
    pixels = Image.fromarray(np.ascontiguousarray(convert_samples(image, "uint8")))
    if format == "jpg":
        pixels.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        pixels.save(buffer, format="PNG", compress_level=PNG_COMPRESSION)
    return buffer.getvalue()


def check_sequence_folder(folder: Union[str, Path]) -> Path:
    """Where a sequence may go: a new or empty folder, or one holding an earlier sequence (its sidecar says so),
    which the new one replaces whole once complete. Any other folder is refused before work starts."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise AniTalkerError(f"frames folder {folder} is a file; give a folder for the image sequence")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / SIDECAR).is_file():
        raise AniTalkerError(f"frames folder {folder} already holds other files; give a new or empty folder (a "
                             f"folder holding an earlier sequence, with its {SIDECAR}, is replaced)")
    return folder


class FrameSequenceWriter:
    """Numbered frames (``<name>_001001.png``, ...), the matte as alpha or ``matte_<number>.png``, the speech as
    audio.wav and ``sequence.json``, for compositing software.

    Everything goes into a hidden temporary folder beside ``folder`` that is renamed to ``folder`` when closed;
    ``abort`` deletes it. ``folder=None`` encodes without writing (what the run's estimate times). ``layout``:
    where the frames sit in the picture (``VideoRender.layout``), recorded in the sidecar.
    """

    def __init__(self, folder: Optional[Union[str, Path]], fps: float = FPS,
                 options: SequenceOptions = SequenceOptions(), name: str = "frame",
                 layout: Optional[dict[str, Any]] = None) -> None:
        self.options = options.check()
        if options.matte == "separate" and name == MATTE_NAME:
            raise AniTalkerError(f"frames named {name!r} would take the matte files' names; choose another name")
        self.fps, self.name, self.layout = fps, name, dict(layout or {})
        self.frames_written = 0
        self.size: Optional[tuple[int, int]] = None
        self.audio: Optional[dict[str, Any]] = None
        self.folder: Optional[Path] = None
        self.temp: Optional[Path] = None
        if folder is not None:
            self.folder = check_sequence_folder(folder).absolute()
            self.temp = self.folder.with_name(f".{self.folder.name}.partial")
            if self.temp.exists():  # left by a run that crashed
                shutil.rmtree(self.temp)
            self.temp.mkdir(parents=True)

    @property
    def suffix(self) -> str:
        return SUFFIXES[self.options.format]

    def file_name(self, index: int, name: Optional[str] = None, suffix: Optional[str] = None) -> str:
        number = self.options.first_frame + index
        return f"{name or self.name}_{number:0{DIGITS}d}.{suffix or self.suffix}"

    def path_of(self, index: int) -> Path:
        """Where frame ``index`` (0 = the first) is once the sequence is complete."""
        if self.folder is None:
            raise RuntimeError("this writer only encodes")
        return self.folder / self.file_name(index)

    def add_audio_stream(self, sample_rate: int, channels: int) -> None:
        """Nothing to set up: the WAV is written whole at the end."""

    def encode(self, image: np.ndarray) -> list[tuple[str, bytes]]:
        """One frame (H,W,3|4) -> [(file name, bytes)] for it: the frame, and its matte when separate."""
        o = self.options
        index = self.frames_written
        has_matte = image.shape[-1] == 4
        if o.matte != "none" and not has_matte:
            raise AniTalkerError("these frames carry no matte (only Render Video's clips and the headless command's "
                                 "renders do); set matte to 'none'")
        colour = image[..., :3]
        files = []
        if o.matte == "alpha":
            if o.format == "exr" and o.head_only:  # EXR stores colour premultiplied by alpha
                rgba = convert_samples(image, "float32")
                image = np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], axis=-1)
            files.append((self.file_name(index), encode_image(image, o.format)))
        else:
            files.append((self.file_name(index), encode_image(colour, o.format)))
        if o.matte == "separate":
            matte_format = "png16" if SEQUENCE_SAMPLES[o.format] != "uint8" else "png"
            files.append((self.file_name(index, MATTE_NAME, "png"), encode_image(image[..., 3], matte_format)))
        return files

    def write(self, frames: Frames) -> None:
        for image in frame_samples(frames):
            files = self.encode(image)
            if self.temp is not None:
                for name, data in files:
                    (self.temp / name).write_bytes(data)
            self.size = (int(image.shape[1]), int(image.shape[0]))
            self.frames_written += 1

    def write_audio(self, waveform: torch.Tensor, sample_rate: int) -> None:
        if self.frames_written:
            waveform = waveform[:, : round(self.frames_written * sample_rate / self.fps)]
        if self.temp is not None:
            write_wav(self.temp / AUDIO, waveform, sample_rate)
        self.audio = {"file": AUDIO, "sample_rate": int(sample_rate), "channels": int(waveform.shape[0]),
                      "samples": int(waveform.shape[1]), "offset_s": 0.0,
                      "starts_with_frame": self.options.first_frame}

    def sidecar(self) -> dict[str, Any]:
        """What a compositor needs to line the files up: numbering, rate, size, matte, audio and placement."""
        o = self.options
        count = self.frames_written
        width, height = self.size or (0, 0)
        numbered = f"%0{DIGITS}d"
        return {
            "frames": {"pattern": f"{self.name}_{numbered}.{self.suffix}", "first": o.first_frame,
                       "last": o.first_frame + count - 1, "count": count, "format": o.format,
                       "description": DESCRIPTIONS[o.format],
                       "channels": "RGBA" if o.matte == "alpha" else "RGB"},
            "fps": int(self.fps) if float(self.fps).is_integer() else self.fps,
            "size": {"width": width, "height": height},
            "colors": "sRGB-encoded values as rendered (EXR too: not linearised)",
            "matte": {"mode": o.matte, "head_only": o.head_only, "alpha": o.alpha,
                      "pattern": f"{MATTE_NAME}_{numbered}.png" if o.matte == "separate" else None,
                      "meaning": "1 = the animated head, 0 = the picture as it was"},
            "audio": self.audio,
            "layout": self.layout,
        }

    def close(self) -> None:
        if self.temp is None or self.folder is None:
            return
        (self.temp / SIDECAR).write_text(json.dumps(self.sidecar(), indent=2) + "\n", encoding="utf-8")
        old = None
        if self.folder.exists():
            check_sequence_folder(self.folder)  # still nothing but an earlier sequence (or empty)
            old = self.folder.with_name(f".{self.folder.name}.replaced")
            if old.exists():
                shutil.rmtree(old)
            self.folder.replace(old)
        self.temp.replace(self.folder)
        if old is not None:
            shutil.rmtree(old)

    def abort(self) -> None:
        if self.temp is not None and self.temp.exists():
            shutil.rmtree(self.temp)
