"""What flows between the stages: frozen records, one per concept of the method.

Tensors inside these records live on the CPU in float32 unless a field says otherwise; the models move
what they need to their own device. Keeping them plain makes them cheap to cache in ComfyUI and to test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Optional

import torch

FPS = 25
"""AniTalker's video frame rate: the motion generator works at 25 motion latents per second."""

MOTION_DIM = 20
STYLE_DIM = 512
IMAGE_SIZE = 256

Stage2Variant = Literal[
    "hubert_audio_only", "hubert_pose_only", "hubert_full_control", "mfcc_pose_only", "mfcc_full_control"
]
STAGE2_VARIANTS: tuple[str, ...] = (
    "hubert_audio_only",
    "hubert_pose_only",
    "hubert_full_control",
    "mfcc_pose_only",
    "mfcc_full_control",
)

ProgressCallback = Callable[[int, int], None]
"""``callback(done, total)``: reports progress; may raise (e.g. ``Interrupted``) to stop the work promptly."""

PreviewCallback = Callable[[torch.Tensor], None]
"""``preview(frame)``: the latest finished frame (H,W,3) float 0..1 on the CPU, for a live view of long work."""


@dataclass(frozen=True)
class CropBox:
    """Square crop in source-image pixels (may extend past the borders: that part is padded).

    mode says how it was made ("auto", "full", "manual"): a 'full' crop is the whole picture squeezed to a square,
    which paste back must stretch back rather than paste as a square. face, when a face was detected, is its box
    inside the crop as fractions of the crop side (centre x, centre y, side).
    """

    x0: int
    y0: int
    size: int
    image_width: int
    image_height: int
    mode: str = "manual"
    face: Optional[tuple[float, float, float]] = None

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

    kind: Literal["hubert", "mfcc"]
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


@dataclass(frozen=True)
class Motion:
    """Motion latents for one or more takes: latents (takes, frames, 20) float32 on the CPU.

    alpha0 is the source portrait's own motion code (1,20) when known, so edits can scale motion around it.
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

    @property
    def num_takes(self) -> int:
        return int(self.latents.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.latents.shape[1])

    @property
    def motion_dim(self) -> int:
        return int(self.latents.shape[2])
