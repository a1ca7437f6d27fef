"""Stage 2 of AniTalker: the diffusion motion generator (a denoiser over sequences of motion latents).

Speech features are encoded once per run (HuBERT: learned layer mix, 50 -> 25 Hz convolution, 4-block
Conformer; MFCC: two stride-2 convolutions, 100 -> 25 Hz) and shifted by the variance adapter. Each denoising
step then only runs the 2-block Conformer decoder over [speech, start motion, appearance, noisy latent, time].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .conformer import Conformer
from .types import MOTION_DIM, STAGE2_VARIANTS, STYLE_DIM
from .variance_adapter import Attributes, apply_adapter, build_adapter

SPEECH_DIM = 512
DECODER_DIM = 1024
HUBERT_DIM = 1024
HUBERT_LAYERS = 25
MFCC_DIM = 39

ATTRIBUTES = {
    "hubert_audio_only": (),
    "hubert_pose_only": ("pose",),
    "mfcc_pose_only": ("pose",),
    "hubert_full_control": ("location", "scale", "pose"),
    "mfcc_full_control": ("location", "scale", "pose"),
}


@dataclass
class Condition:
    """Everything that does not change between denoising steps, computed once per run."""

    speech: torch.Tensor  # (B, T, 512) after the variance adapter
    start: torch.Tensor  # (B, T, 256): projected start motion code and appearance code
    attributes: Attributes


class MotionGenerator(nn.Module):
    """Keys match the ``ema_model.*`` entries of the released stage-2 files (prefix removed)."""

    def __init__(self, variant: str, motion_dim: int = MOTION_DIM) -> None:
        super().__init__()
        if variant not in STAGE2_VARIANTS:
            raise ValueError(f"unknown stage-2 variant {variant!r}; expected one of {STAGE2_VARIANTS}")
        self.variant = variant
        self.audio_kind = variant.split("_")[0]
        self.motion_dim = motion_dim
        self.attributes = ATTRIBUTES[variant]
        self.compute_dtype = torch.float32
        if self.audio_kind == "mfcc":
            self.down_sample1 = nn.Conv1d(MFCC_DIM, 256, 3, stride=2, padding=1)
            self.down_sample2 = nn.Conv1d(256, SPEECH_DIM, 3, stride=2, padding=1)
        else:
            self.weights = nn.Parameter(torch.zeros(HUBERT_LAYERS))
            self.down_sample1 = nn.Conv1d(HUBERT_DIM, SPEECH_DIM, 3, stride=2, padding=1)
            self.speech_encoder = Conformer(SPEECH_DIM, 4)
        self.coarse_decoder = Conformer(DECODER_DIM, 2)
        build_adapter(self, self.attributes, SPEECH_DIM)
        self.init_code_proj = nn.Sequential(nn.Linear(STYLE_DIM, 128))
        self.noisy_encoder = nn.Sequential(nn.Linear(motion_dim, 128))
        self.t_encoder = nn.Sequential(nn.Linear(1, 128))
        self.encoder_direction_code = nn.Linear(motion_dim, 128)
        self.out_proj = nn.Linear(DECODER_DIM, motion_dim)

    @property
    def has_control(self) -> bool:
        return bool(self.attributes)

    def encode_speech(self, speech: torch.Tensor) -> torch.Tensor:
        """hubert (B, 25, 2T, 1024) or mfcc (B, 4T, 39) -> (B, T, 512)."""
        if self.audio_kind == "mfcc":
            x = self.down_sample2(self.down_sample1(speech.transpose(1, 2)))
            return x.transpose(1, 2)
        mix = F.softmax(self.weights, dim=-1)
        x = (mix.view(1, -1, 1, 1) * speech).sum(dim=1)
        x = self.down_sample1(x.transpose(1, 2)).transpose(1, 2)
        return self.speech_encoder(x)

    def condition(self, wa: torch.Tensor, alpha0: torch.Tensor, speech: torch.Tensor, given: Attributes,
                  use_given: bool) -> Condition:
        """Speech encoding, variance adapter and start-code projections: once per sampling run."""
        x = self.encode_speech(speech)
        x, used = apply_adapter(self, self.attributes, x, given, use_given)
        t = x.shape[1]
        start = torch.cat([self.encoder_direction_code(alpha0), self.init_code_proj(wa)], dim=-1)
        start = start.unsqueeze(1).expand(x.shape[0], t, -1)
        return Condition(speech=x, start=start, attributes=used)

    def denoise(self, cond: Condition, noisy: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """Predict the noise in ``noisy`` (B, T, 20) at integer diffusion time ``timestep`` (B,)."""
        b, t, _ = noisy.shape
        time = self.t_encoder(timestep.unsqueeze(1).float()).unsqueeze(1).expand(b, t, -1)
        speech, start = cond.speech, cond.start
        if speech.shape[0] != b:
            speech, start = speech.expand(b, -1, -1), start.expand(b, -1, -1)
        h = torch.cat([speech, start, self.noisy_encoder(noisy), time.to(speech.dtype)], dim=-1)
        return self.out_proj(self.coarse_decoder(h))
