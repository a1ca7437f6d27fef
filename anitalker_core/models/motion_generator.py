"""Stage 2 of AniTalker: the diffusion motion generator (a denoiser over sequences of motion latents).

Speech features are encoded once per run (HuBERT: learned layer mix, 50 -> 25 Hz convolution, 4-block
Conformer; MFCC: two stride-2 convolutions, 100 -> 25 Hz) and shifted by the variance adapter. Each denoising
step then only runs the 2-block Conformer decoder over [speech, start motion, appearance, noisy latent, time].
The generator hands the sampler a ``denoise(x, t)`` closure over one encoded ``Condition``. A clip of any length
is sampled in one pass over all its frames, as the official code samples it; the conformers' attention runs in
blocks of queries, so memory grows with the length, not its square (see ``conformer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..audio.features import HUBERT_DIM, HUBERT_LAYERS, MFCC_DIM, ROWS_PER_FRAME
from ..diffusion.ddim import DEFAULT_STEPS
from ..diffusion.sampling import Denoiser, sample_ddim
from ..errors import AniTalkerError
from ..types import MOTION_DIM, STYLE_DIM, ProgressCallback
from .conformer import Conformer
from .variance_adapter import Attributes, apply_adapter, build_adapter
from ..weights.variants import get_variant

SPEECH_DIM = 512
"""Width of the encoded speech the variance adapter shifts."""
PROJ_DIM = 128
"""Width each other decoder input is projected to: start motion code, appearance code, noisy latent, time."""
DECODER_DIM = SPEECH_DIM + 4 * PROJ_DIM
MFCC_HIDDEN = 256
"""Channels between the two stride-2 convolutions that bring MFCC rows from 100 Hz to 25 Hz."""


@dataclass(frozen=True)
class Condition:
    """What one sampling run is conditioned on, before any network runs.

    speech: hubert (B, 25, rows, 1024) or mfcc (B, rows, 39), ``rows_per_frame`` rows per video frame on axis -2.
    wa (1, 512), alpha0 (1, 20): the portrait's appearance and motion codes.
    control: pose (B, F, 3) as degrees / 90, location and scale (B, F, 1) to follow; what it lacks (all of it
    when None) the variance adapter predicts from speech.
    """

    speech: torch.Tensor
    wa: torch.Tensor
    alpha0: torch.Tensor
    rows_per_frame: int
    control: Optional[Attributes] = None

    @property
    def num_frames(self) -> int:
        return self.speech.shape[-2] // self.rows_per_frame


@dataclass(frozen=True)
class EncodedCondition:
    """A Condition after the speech encoder and variance adapter: fixed for every denoising step."""

    speech: torch.Tensor  # (B, T, 512) after the variance adapter
    start: torch.Tensor  # (B, T, 256): projected start motion code and appearance code
    attributes: Attributes  # what the variance adapter used (given or predicted)


class MotionGenerator(nn.Module):
    """Keys match the ``ema_model.*`` entries of the released stage-2 files (prefix removed)."""

    def __init__(self, variant: str, motion_dim: int = MOTION_DIM) -> None:
        super().__init__()
        spec = get_variant(variant)
        self.variant = spec.name
        self.audio_kind = spec.audio
        self.attributes = spec.attributes
        self.motion_dim = motion_dim
        if self.audio_kind == "mfcc":
            self.down_sample1 = nn.Conv1d(MFCC_DIM, MFCC_HIDDEN, 3, stride=2, padding=1)
            self.down_sample2 = nn.Conv1d(MFCC_HIDDEN, SPEECH_DIM, 3, stride=2, padding=1)
        else:
            self.weights = nn.Parameter(torch.zeros(HUBERT_LAYERS))
            self.down_sample1 = nn.Conv1d(HUBERT_DIM, SPEECH_DIM, 3, stride=2, padding=1)
            self.speech_encoder = Conformer(SPEECH_DIM, 4)
        self.coarse_decoder = Conformer(DECODER_DIM, 2)
        build_adapter(self, self.attributes, SPEECH_DIM)
        self.init_code_proj = nn.Sequential(nn.Linear(STYLE_DIM, PROJ_DIM))
        self.noisy_encoder = nn.Sequential(nn.Linear(motion_dim, PROJ_DIM))
        self.t_encoder = nn.Sequential(nn.Linear(1, PROJ_DIM))
        self.encoder_direction_code = nn.Linear(motion_dim, PROJ_DIM)
        self.out_proj = nn.Linear(DECODER_DIM, motion_dim)

    def condition(self, speech: torch.Tensor, wa: torch.Tensor, alpha0: torch.Tensor,
                  control: Optional[Attributes] = None) -> Condition:
        """A Condition for this generator's kind of speech features."""
        return Condition(speech=speech, wa=wa, alpha0=alpha0, rows_per_frame=ROWS_PER_FRAME[self.audio_kind],
                         control=control)

    def encode_speech(self, speech: torch.Tensor) -> torch.Tensor:
        """hubert (B, 25, 2T, 1024) or mfcc (B, 4T, 39) -> (B, T, 512)."""
        if self.audio_kind == "mfcc":
            x = self.down_sample2(self.down_sample1(speech.transpose(1, 2)))
            return x.transpose(1, 2)
        # the learned mix of the hidden states, one state at a time: no product as large as all of them together
        mix = F.softmax(self.weights, dim=-1).tolist()
        x = speech[:, 0] * mix[0]
        for layer in range(1, len(mix)):
            x.add_(speech[:, layer], alpha=mix[layer])
        x = self.down_sample1(x.transpose(1, 2)).transpose(1, 2)
        return self.speech_encoder(x)

    def encode(self, cond: Condition) -> EncodedCondition:
        """Speech encoding, variance adapter and start-code projections: once per sampling run."""
        x = self.encode_speech(cond.speech)
        x, used = apply_adapter(self, self.attributes, x, cond.control)
        start = torch.cat([self.encoder_direction_code(cond.alpha0), self.init_code_proj(cond.wa)], dim=-1)
        start = start.unsqueeze(1).expand(x.shape[0], x.shape[1], -1)
        return EncodedCondition(speech=x, start=start, attributes=used)

    def denoise(self, enc: EncodedCondition, noisy: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """Predict the noise in ``noisy`` (B, T, 20) at integer diffusion time ``timestep`` (B,)."""
        b, t, _ = noisy.shape
        time = self.t_encoder(timestep.unsqueeze(1).float()).unsqueeze(1).expand(b, t, -1)
        speech, start = enc.speech, enc.start
        if speech.shape[0] != b:
            speech, start = speech.expand(b, -1, -1), start.expand(b, -1, -1)
        h = torch.cat([speech, start, self.noisy_encoder(noisy), time.to(speech.dtype)], dim=-1)
        return self.out_proj(self.coarse_decoder(h))

    def denoiser(self, cond: Condition) -> tuple[Denoiser, Attributes]:
        """``denoise(x, t) -> eps`` over ``cond`` for the sampler, and the attributes the variance adapter used."""
        enc = self.encode(cond)
        return (lambda x, t: self.denoise(enc, x, t)), enc.attributes

    @torch.no_grad()
    def sample(self, cond: Condition, noise: torch.Tensor, steps: int = DEFAULT_STEPS,
               callback: Optional[ProgressCallback] = None) -> tuple[torch.Tensor, Attributes]:
        """Denoise ``noise`` (B, F, 20) into motion latents (B takes share one speech encoding).

        Returns the latents and the variance attributes used: the given control, or the predictions."""
        frames = noise.shape[1]
        if cond.num_frames != frames:
            raise AniTalkerError(f"the speech covers {cond.num_frames} video frames but the noise has {frames}")
        denoise, attributes = self.denoiser(cond)
        return sample_ddim(denoise, noise, steps, callback), attributes
