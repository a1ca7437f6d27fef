"""DDIM sampling (eta = 0) over AniTalker's 1000-step linear-beta diffusion schedule.

The schedule is built in float64 like the training code and respaced to the requested number of steps;
coefficients are cast to float32 only when applied, so trajectories match the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import numpy as np
import torch

from .errors import ControlError
from .motion_generator import Condition, MotionGenerator
from .types import MOTION_DIM, ProgressCallback
from .variance_adapter import Attributes

TRAIN_STEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02

# Uniform draws the official demo's global RNG consumes while building each stage-2 model (see the fixtures).
OFFICIAL_RNG_OFFSET = {
    "hubert_audio_only": 45_815_956,
    "hubert_pose_only": 46_543_383,
    "hubert_full_control": 47_995_673,
    "mfcc_pose_only": 32_755_735,
    "mfcc_full_control": 34_208_025,
}


def valid_step_counts(limit: int = TRAIN_STEPS) -> list[int]:
    """Step counts an integer stride over the 1000 training steps can give exactly."""
    return sorted({len(range(0, TRAIN_STEPS, k)) for k in range(1, limit)})


def timesteps(steps: int) -> list[int]:
    """Training timesteps visited for ``steps`` DDIM steps, ascending (50 -> 0, 20, ..., 980)."""
    for stride in range(1, TRAIN_STEPS):
        if len(range(0, TRAIN_STEPS, stride)) == steps:
            return list(range(0, TRAIN_STEPS, stride))
    valid = valid_step_counts()
    near = sorted(valid, key=lambda n: abs(n - steps))[:4]
    raise ControlError(
        f"{steps} sampling steps cannot be spaced evenly over the 1000 training steps; "
        f"choose one of the nearby counts {sorted(near)} (any of 2-36 works)"
    )


@dataclass(frozen=True)
class Schedule:
    timesteps: tuple[int, ...]  # ascending
    alphas_cumprod: np.ndarray  # float64, one per respaced step
    alphas_cumprod_prev: np.ndarray


@lru_cache(maxsize=32)
def schedule(steps: int) -> Schedule:
    betas = np.linspace(BETA_START, BETA_END, TRAIN_STEPS, dtype=np.float64)
    full = np.cumprod(1.0 - betas)
    kept = timesteps(steps)
    new_betas, last = [], 1.0
    for t in kept:
        new_betas.append(1.0 - full[t] / last)
        last = full[t]
    ac = np.cumprod(1.0 - np.asarray(new_betas, dtype=np.float64))
    return Schedule(tuple(kept), ac, np.append(1.0, ac[:-1]))


def ddim_step(x: torch.Tensor, eps: torch.Tensor, ab: float, ab_prev: float) -> torch.Tensor:
    """One deterministic DDIM update with the clean-latent estimate clamped to [-1, 1]."""
    c = lambda v: torch.tensor(v, dtype=torch.float64).float().to(x.device)  # noqa: E731
    recip, recipm1 = c(np.sqrt(1.0 / ab)), c(np.sqrt(1.0 / ab - 1.0))
    x0 = (recip * x - recipm1 * eps).clamp(-1, 1)
    eps = (recip * x - x0) / recipm1
    ab_prev_t = c(ab_prev)
    return x0 * torch.sqrt(ab_prev_t) + torch.sqrt(1 - ab_prev_t) * eps


WINDOW_FRAMES = 1500  # 60 s: longer inputs are sampled in overlapping windows (bounded attention memory)
WINDOW_OVERLAP = 50


@torch.no_grad()
def sample_motion(
    generator: MotionGenerator,
    wa: torch.Tensor,
    alpha0: torch.Tensor,
    speech: torch.Tensor,
    pose: Optional[torch.Tensor],
    location: Optional[torch.Tensor],
    scale: Optional[torch.Tensor],
    noise: torch.Tensor,
    steps: int = 50,
    use_control: bool = False,
    callback: Optional[ProgressCallback] = None,
    trace: Optional[list] = None,
    window: int = WINDOW_FRAMES,
    overlap: int = WINDOW_OVERLAP,
) -> torch.Tensor:
    """Denoise ``noise`` (B, F, 20) into motion latents; B takes share one speech encoding.

    pose (B,F,3) in degrees/90, location/scale (B,F,1): used when ``use_control``, else predicted from speech.
    Up to ``window`` frames are sampled in one pass, exactly like the reference; longer clips are sampled in
    windows that overlap by ``overlap`` frames and are cross-faded, so memory stays bounded for any length.
    ``trace``, if given, receives per-step dicts (for tests and diagnostics).
    """
    frames = noise.shape[1]
    if frames <= window:
        return _sample_once(generator, wa, alpha0, speech, pose, location, scale, noise, steps, use_control,
                            callback, trace)
    per = speech.shape[-2] // frames  # speech rows per video frame: 2 (HuBERT) or 4 (MFCC)
    starts = list(range(0, frames - overlap, window - overlap))
    out = torch.zeros_like(noise, dtype=torch.float32)
    weight = torch.zeros(1, frames, 1, device=noise.device)
    total = len(starts) * len(schedule(steps).timesteps)
    for n, a in enumerate(starts):
        b = min(a + window, frames)
        cut = lambda t: None if t is None else t[:, a:b]  # noqa: E731
        offset = n * len(schedule(steps).timesteps)
        part = _sample_once(generator, wa, alpha0, speech[..., a * per: b * per, :], cut(pose), cut(location),
                            cut(scale), noise[:, a:b], steps, use_control,
                            None if callback is None else (lambda d, t, o=offset: callback(o + d, total)), None)
        ramp = torch.ones(b - a, device=noise.device)
        fade = min(overlap, b - a)
        if a > 0:
            ramp[:fade] = torch.linspace(0, 1, fade + 2, device=noise.device)[1:-1]
        if b < frames:
            ramp[-fade:] = torch.minimum(ramp[-fade:], torch.linspace(1, 0, fade + 2, device=noise.device)[1:-1])
        out[:, a:b] += part * ramp.view(1, -1, 1)
        weight[:, a:b] += ramp.view(1, -1, 1)
    return out / weight


def _sample_once(generator, wa, alpha0, speech, pose, location, scale, noise, steps, use_control, callback, trace):
    sched = schedule(steps)
    given = Attributes(pose=pose, location=location, scale=scale)
    cond: Condition = generator.condition(wa, alpha0, speech, given, use_control)
    x = noise.float()
    total = len(sched.timesteps)
    for done, idx in enumerate(reversed(range(total)), start=1):
        t = torch.full((x.shape[0],), sched.timesteps[idx], dtype=torch.long, device=x.device)
        eps = generator.denoise(cond, x, t).float()
        if trace is not None:
            trace.append({"noisy_x": x, "t": t, "eps": eps, "attributes": cond.attributes})
        x = ddim_step(x, eps, float(sched.alphas_cumprod[idx]), float(sched.alphas_cumprod_prev[idx]))
        if callback is not None:
            callback(done, total)
    return x


def official_start_noise(seed: int, variant: str, num_frames: int) -> torch.Tensor:
    """The official demo's start noise for ``seed`` (bit-identical), replaying its global RNG use."""
    g = torch.Generator().manual_seed(int(seed))
    skip = OFFICIAL_RNG_OFFSET[variant]
    chunk = 1 << 24
    while skip > 0:  # in chunks, so memory stays small
        n = min(chunk, skip)
        torch.empty(n).uniform_(generator=g)
        skip -= n
    return torch.randn((1, num_frames, MOTION_DIM), generator=g)
