"""What flows between the stages: frozen records, one per concept of the method.

Tensors inside these records live on the CPU in float32 unless a field says otherwise; the models move
what they need to their own device. Keeping them plain makes them cheap to cache in ComfyUI and to test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal, Optional

import numpy as np
import torch

from .errors import MotionError

FPS = 25
"""AniTalker's video frame rate: the motion generator works at 25 motion latents per second."""
SAMPLE_RATE = 16000
"""The speech encoders' input rate (HuBERT and MFCC alike): every recording is resampled to it."""

MOTION_DIM = 20
STYLE_DIM = 512
IMAGE_SIZE = 256

AudioKind = Literal["hubert", "mfcc"]

ProgressCallback = Callable[[int, int], None]
"""``callback(done, total)``: reports progress; may raise (e.g. ``Interrupted``) to stop the work promptly."""

PreviewCallback = Callable[[torch.Tensor], None]
"""``preview(frame)``: the latest finished frame (H,W,3) float 0..1 on the CPU, for a live view of long work."""


@dataclass(frozen=True)
class CropBox:
    """Square crop in source-image pixels (may extend past the borders: that part is padded).

    mode says how it was made ("auto", "full", "manual"): a 'full' crop is the whole picture squeezed to a square,
    which paste back must stretch back rather than paste as a square. face, when a face was detected, is its box
    inside the crop as fractions of the crop side (centre x, centre y, side); faces, every face found in the
    picture (x, y, side in source pixels), numbered from the left as a face index counts them.
    """

    x0: int
    y0: int
    size: int
    image_width: int
    image_height: int
    mode: str = "manual"
    face: Optional[tuple[float, float, float]] = None
    faces: tuple[tuple[float, float, float], ...] = ()

    @property
    def x1(self) -> int:
        return self.x0 + self.size

    @property
    def y1(self) -> int:
        return self.y0 + self.size


@dataclass(frozen=True)
class PortraitCode:
    """A portrait encoded once by the motion encoder, ready to render any number of motions.

    image: (1,3,256,256) in [-1,1], the crop the model sees.
    wa: (1,512) appearance code; alpha0: (1,20) the portrait's own motion code;
    feats: the encoder's feature maps used by the warp decoder (coarse to fine).
    """

    image: torch.Tensor
    wa: torch.Tensor
    alpha0: torch.Tensor
    feats: tuple[torch.Tensor, ...]
    crop: Optional[CropBox] = None
    note: str = ""


@dataclass(frozen=True)
class AudioFeatures:
    """Speech features at the rate the motion generator expects.

    kind "hubert": values (25, 2*num_frames, 1024), every HuBERT hidden state at 50 Hz.
    kind "mfcc": values (4*num_frames, 39), MFCC + delta + delta-delta at 100 Hz.
    """

    kind: AudioKind
    values: torch.Tensor
    num_frames: int
    duration_s: float
    note: str = ""


@dataclass(frozen=True)
class VarianceControl:
    """Head pose (yaw, pitch, roll in degrees), face location and face scale per frame.

    Each of pose (K,3), location (K,1), scale (K,1) holds K >= 1 rows; `frames` says at which video frame each
    row applies (None: a constant when K == 1). Resolved to per-frame signals by ``control.resolve``.
    """

    pose_deg: torch.Tensor
    location: torch.Tensor
    scale: torch.Tensor
    frames: Optional[tuple[int, ...]] = None
    note: str = ""


@dataclass(frozen=True, eq=False)
class Shot:
    """Where the frames of a dubbed motion sit in the footage they are pasted into, frame by frame.

    frames (F,) int64: the footage frame each motion frame shows (the footage's own order: forward, backward,
    held); boxes (F,3) int64: the square (x0, y0, side) around the tracked head, in footage pixels; present (F,)
    bool: whether the face is there (elsewhere the footage frame stays as it is); reference: (footage frame, box)
    the portrait was cropped from, which the colours are matched on; size: the footage's (width, height); fps: its
    frame rate; speech_frames: how many frames carry the new speech (after them the footage continues with its own
    sound).
    """

    frames: np.ndarray
    boxes: np.ndarray
    present: np.ndarray
    reference: tuple[int, tuple[int, int, int]]
    size: tuple[int, int]
    fps: float
    speech_frames: int

    def __post_init__(self) -> None:
        n = len(self.frames)
        if self.boxes.shape != (n, 3) or self.present.shape != (n,):
            raise MotionError(f"a shot's frames, boxes and presence must be as long as each other, got {n}, "
                              f"{self.boxes.shape[0]} and {self.present.shape[0]}")

    @property
    def num_frames(self) -> int:
        return int(len(self.frames))

    def window(self, first: int, count: int) -> "Shot":
        """Frames ``first`` .. ``first + count`` of the shot."""
        cut = slice(first, first + count)
        speech = min(max(self.speech_frames - first, 0), count)
        return replace(self, frames=self.frames[cut], boxes=self.boxes[cut], present=self.present[cut],
                       speech_frames=speech)


ATTRIBUTE_WIDTHS = {"pose_deg": 3, "location": 1, "scale": 1}
"""Motion's per-take, per-frame variance attributes and their widths: yaw/pitch/roll, face location, face scale."""


@dataclass(frozen=True)
class Motion:
    """Motion latents for one or more takes: latents (takes, frames, 20) float32, always on the CPU (a Motion made
    from tensors elsewhere moves them there).

    alpha0 is the source portrait's own motion code (1,20) when known, so edits can scale motion around it.
    pose_deg (takes, frames, 3) yaw/pitch/roll in degrees, location and scale (takes, frames, 1) in 0..1 are what
    the variance adapter used for each take: its predictions from speech, or the control it was given. They
    describe the requested head pose, not the latents, so edits of the latents (smoothing, strength) leave them
    as they are while cutting frames or picking takes cuts them alike. None where the generator has no such
    attribute (audio only, video-driven motion).

    A Motion checks itself when it is made, so every Motion that exists is usable (MotionError otherwise).
    """

    latents: torch.Tensor
    fps: float = FPS
    variant: str = ""
    alpha0: Optional[torch.Tensor] = None
    seeds: tuple[int, ...] = field(default_factory=tuple)
    note: str = ""
    pose_deg: Optional[torch.Tensor] = None
    location: Optional[torch.Tensor] = None
    scale: Optional[torch.Tensor] = None
    shot: Optional[Shot] = None
    """For a dubbed motion (Dub Motion): where each frame sits in the footage; cut with the frames."""

    def __post_init__(self) -> None:
        lat = self.latents
        if not isinstance(lat, torch.Tensor) or lat.ndim != 3:
            shape = tuple(lat.shape) if isinstance(lat, torch.Tensor) else type(lat).__name__
            raise MotionError(f"motion latents must be a (takes, frames, numbers) tensor, got {shape}")
        if lat.numel() == 0:
            raise MotionError(f"the motion is empty {tuple(lat.shape)}: it has no frames; generate or load a motion "
                              "first")
        if not lat.is_floating_point() or not bool(torch.isfinite(lat).all()):
            raise MotionError("the motion contains NaN or infinite values; regenerate it")
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)) or not math.isfinite(self.fps) \
                or self.fps <= 0:
            raise MotionError(f"the motion's frame rate must be a positive number, got {self.fps!r}")
        if len(self.seeds) not in (0, self.num_takes):
            raise MotionError(f"the motion has {self.num_takes} take(s) but {len(self.seeds)} seeds")
        if self.alpha0 is not None:
            code = self.alpha0
            if not isinstance(code, torch.Tensor) or code.numel() != self.motion_dim \
                    or not bool(torch.isfinite(code).all()):
                raise MotionError(f"the motion's portrait motion code must hold {self.motion_dim} finite numbers, got "
                                  f"{getattr(code, 'shape', type(code).__name__)}")
        for name, width in ATTRIBUTE_WIDTHS.items():
            value = getattr(self, name)
            if value is None:
                continue
            expected = (self.num_takes, self.num_frames, width)
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != expected:
                raise MotionError(f"the motion's {name} must be shaped (takes, frames, {width}) = {expected}, got "
                                  f"{getattr(value, 'shape', type(value).__name__)}")
            if not value.is_floating_point() or not bool(torch.isfinite(value).all()):
                raise MotionError(f"the motion's {name} contains NaN or infinite values")
        if self.shot is not None and self.shot.num_frames != self.num_frames:
            raise MotionError(f"the motion has {self.num_frames} frames but its shot {self.shot.num_frames}")
        for name in ("latents", "alpha0", *ATTRIBUTE_WIDTHS):  # edits compute in float64, which some devices lack
            value = getattr(self, name)
            if value is not None and value.device.type != "cpu":
                object.__setattr__(self, name, value.detach().cpu())

    @property
    def num_takes(self) -> int:
        return int(self.latents.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.latents.shape[1])

    @property
    def motion_dim(self) -> int:
        return int(self.latents.shape[2])

    def attributes(self) -> dict[str, torch.Tensor]:
        """The variance attributes this motion carries, {name: (takes, frames, width)}."""
        return {n: getattr(self, n) for n in ATTRIBUTE_WIDTHS if getattr(self, n) is not None}

    def take_index(self, index: Any) -> int:
        """A take number (from 0; negative counts from the end) checked against this motion, as 0..takes-1."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise MotionError(f"take index must be a whole number, got {index!r}")
        if not -self.num_takes <= int(index) < self.num_takes:
            raise MotionError(f"take {int(index)} does not exist: this motion has {self.num_takes} take(s), "
                              f"numbered 0 to {self.num_takes - 1}")
        return int(index) % self.num_takes

    def take(self, index: int) -> "Motion":
        """One take as a single-take motion: latents, seed and variance attributes of that take."""
        i = self.take_index(index)
        one = {n: t[i: i + 1].clone() for n, t in self.attributes().items()}
        return replace(self, latents=self.latents[i: i + 1].clone(), seeds=self.seeds[i: i + 1], **one,
                       note=f"take {i} of {self.num_takes}")

    def first_frames(self, frames: int, takes: Optional[int] = None) -> "Motion":
        """The first ``frames`` frames (latents and attributes alike), a single take repeated to ``takes``."""
        takes = takes or self.num_takes
        cut = {n: t[:, :frames].expand(takes, -1, -1).contiguous() for n, t in self.attributes().items()}
        seeds = self.seeds if takes == self.num_takes else ()
        shot = self.shot.window(0, min(frames, self.num_frames)) if self.shot is not None else None
        return replace(self, latents=self.latents[:, :frames].expand(takes, -1, -1).contiguous(), seeds=seeds,
                       shot=shot, **cut)


def check_motion(value: Any, what: str = "motion") -> Motion:
    """``value`` if it is a Motion (every Motion checked itself when made), else a MotionError that says what to
    connect instead."""
    if not isinstance(value, Motion):
        raise MotionError(f"{what} is not an AniTalker motion (got {type(value).__name__}); connect a sampler, "
                          "Motion Extract or Load Motion output")
    return value
