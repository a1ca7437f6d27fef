"""Cheap edits on motion latents (takes, frames, 20): smoothing, strength, blending, picking takes.

The motion code is 20 numbers per frame, so these edits cost nothing next to rendering and let artists calm
jitter and head shake without re-sampling.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional, Union

import torch
import torch.nn.functional as F

from .errors import MotionError
from .types import Motion


def check_motion(motion: Motion, what: str = "motion") -> None:
    if not isinstance(motion, Motion):
        raise MotionError(f"{what} is not an AniTalker motion; connect a sampler, Motion Extract or Load Motion")
    if motion.latents.ndim != 3 or motion.num_frames == 0 or motion.num_takes == 0:
        raise MotionError(f"{what} is empty ({tuple(motion.latents.shape)}); generate or load a motion first")
    if not torch.isfinite(motion.latents).all():
        raise MotionError(f"{what} contains NaN or infinite values; regenerate it")


def jitter(latents: torch.Tensor) -> float:
    """Mean absolute second difference over time: how much frame-to-frame motion wobbles."""
    if latents.shape[-2] < 3:
        return 0.0
    return float((latents[..., 2:, :] - 2 * latents[..., 1:-1, :] + latents[..., :-2, :]).abs().mean())


def gaussian_lowpass(latents: torch.Tensor, sigma: float) -> torch.Tensor:
    """Zero-phase Gaussian smoothing along frames (edges held), for (takes, frames, dim)."""
    if sigma <= 0:
        return latents.clone()
    radius = max(1, int(round(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(latents.dtype)
    takes, frames, dim = latents.shape
    x = latents.permute(0, 2, 1).reshape(takes * dim, 1, frames)
    x = F.pad(x, (radius, radius), mode="replicate")
    y = F.conv1d(x, kernel.view(1, 1, -1))
    return y.reshape(takes, dim, frames).permute(0, 2, 1).contiguous()


def smooth(motion: Motion, strength: float) -> Motion:
    """Remove frame-to-frame jitter. strength 0 = unchanged; 1 ~ a Gaussian of 1 frame (40 ms) sigma, which
    keeps syllable-rate lip motion (~4-8 Hz) while killing single-frame wobble; larger values smooth more."""
    check_motion(motion)
    if strength < 0:
        raise MotionError(f"smoothing strength must be 0 or more, got {strength}")
    if strength == 0:
        return replace(motion, latents=motion.latents.clone())
    out = gaussian_lowpass(motion.latents, float(strength))
    return replace(motion, latents=out, note=f"smoothed (strength {strength:g})")


def scale_strength(motion: Motion, strength: float = 1.0, head: Optional[float] = None,
                   mouth: Optional[float] = None, split_sigma: float = 4.0) -> Motion:
    """Scale motion around the portrait's own motion code: <1 calmer, >1 livelier.

    ``head`` scales the slow part (Gaussian low-pass, sigma ``split_sigma`` frames) and ``mouth`` the fast
    remainder; each defaults to ``strength``.
    """
    check_motion(motion)
    head = strength if head is None else head
    mouth = strength if mouth is None else mouth
    if head == 1 and mouth == 1:
        return replace(motion, latents=motion.latents.clone())
    note = ""
    if motion.alpha0 is not None and motion.alpha0.shape[-1] == motion.motion_dim:
        center = motion.alpha0.reshape(1, 1, -1).to(motion.latents.dtype)
    else:
        center = motion.latents.mean(dim=1, keepdim=True)
        note = "no portrait motion code in this motion; scaled around its average instead"
    dev = motion.latents - center
    if head == mouth:
        out = center + dev * head
    else:
        slow = gaussian_lowpass(dev, split_sigma)
        out = center + slow * head + (dev - slow) * mouth
    text = f"strength head {head:g}, mouth {mouth:g}" + (f"; {note}" if note else "")
    return replace(motion, latents=out, note=text)


def _curve(weight: Union[float, torch.Tensor], frames: int) -> torch.Tensor:
    w = torch.as_tensor(weight, dtype=torch.float32).flatten()
    if not torch.isfinite(w).all():
        raise MotionError("the blend weight must be finite")
    if w.numel() == 1:
        return w.expand(frames)
    if w.numel() == frames:
        return w
    # resample a curve of another length over the motion's frames
    return F.interpolate(w.view(1, 1, -1), size=frames, mode="linear", align_corners=True).flatten()


def blend(a: Motion, b: Motion, weight: Union[float, torch.Tensor] = 0.5) -> Motion:
    """(1 - w) * a + w * b per frame; w = 0 gives a and w = 1 gives b exactly. Different lengths: the shorter."""
    check_motion(a, "the first motion")
    check_motion(b, "the second motion")
    if a.motion_dim != b.motion_dim:
        raise MotionError(f"cannot blend motions of different sizes ({a.motion_dim} vs {b.motion_dim} numbers per "
                          "frame): they come from different renderers")
    if a.num_takes != b.num_takes and 1 not in (a.num_takes, b.num_takes):
        raise MotionError(f"cannot blend {a.num_takes} takes with {b.num_takes} takes; pick one take of either")
    frames = min(a.num_frames, b.num_frames)
    notes = []
    if a.num_frames != b.num_frames:
        notes.append(f"motions have {a.num_frames} and {b.num_frames} frames; blended the first {frames}")
    la, lb = a.latents[:, :frames], b.latents[:, :frames]
    takes = max(a.num_takes, b.num_takes)
    la, lb = la.expand(takes, -1, -1), lb.expand(takes, -1, -1)
    w = _curve(weight, frames).view(1, frames, 1)
    mixed = la + (lb - la) * w
    out = torch.where(w == 0, la, torch.where(w == 1, lb, mixed)).contiguous()
    return replace(a, latents=out, seeds=a.seeds if a.num_takes == takes else b.seeds, note="; ".join(notes))


def select_take(motion: Motion, index: int) -> Motion:
    check_motion(motion)
    if not -motion.num_takes <= index < motion.num_takes:
        raise MotionError(f"take {index} does not exist: this motion has {motion.num_takes} take(s), numbered from 0")
    seeds = (motion.seeds[index],) if len(motion.seeds) == motion.num_takes else ()
    return replace(motion, latents=motion.latents[index: index + 1].clone(), seeds=seeds)
