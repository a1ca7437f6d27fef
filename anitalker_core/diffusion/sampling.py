"""The sampling loop: DDIM over any denoiser given as a callable, in one pass or in cross-faded windows.

The loop knows no network: the model comes in as ``denoise(x, t) -> eps`` and progress and Cancel through
``callback(done, total)``, so the sampler can be tested without a network and the network without a sampler.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from ..types import ProgressCallback
from .ddim import schedule

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``denoise(x, t) -> eps``: the noise in samples x (B, F, C) at integer diffusion times t (B,)."""

WINDOW_FRAMES = 1500
"""60 s: longer inputs are sampled in overlapping windows, so attention memory stays bounded for any length."""
WINDOW_OVERLAP = 50
"""Frames two windows share and cross-fade over (2 s)."""


@torch.no_grad()
def sample_ddim(denoise: Denoiser, noise: torch.Tensor, steps: int,
                callback: Optional[ProgressCallback] = None) -> torch.Tensor:
    """Deterministic DDIM from ``noise`` (B, F, C) in ``steps`` steps; ``callback`` after every step."""
    sched = schedule(steps)
    x = noise.float()
    total = len(sched)
    for done, index in enumerate(reversed(range(total)), start=1):
        t = torch.full((x.shape[0],), sched.timesteps[index], dtype=torch.long, device=x.device)
        x = sched.step(denoise(x, t).float(), index, x)
        if callback is not None:
            callback(done, total)
    return x


def windows(frames: int, window: int = WINDOW_FRAMES, overlap: int = WINDOW_OVERLAP) -> list[tuple[int, int]]:
    """[(start, stop)] frame spans of at most ``window`` frames that overlap by ``overlap`` and cover all frames."""
    if frames <= window:
        return [(0, frames)]
    return [(a, min(a + window, frames)) for a in range(0, frames - overlap, window - overlap)]


def crossfade(pieces: Sequence[tuple[int, int, torch.Tensor]], frames: int, overlap: int) -> torch.Tensor:
    """Join (start, stop, values (B, stop-start, C)) pieces along frames, fading linearly where they overlap."""
    if len(pieces) == 1 and pieces[0][:2] == (0, frames):
        return pieces[0][2]
    first = pieces[0][2]
    out = torch.zeros(first.shape[0], frames, first.shape[2], dtype=torch.float32, device=first.device)
    weight = torch.zeros(1, frames, 1, device=first.device)
    for a, b, part in pieces:
        ramp = torch.ones(b - a, device=first.device)
        fade = min(overlap, b - a)
        if a > 0:
            ramp[:fade] = torch.linspace(0, 1, fade + 2, device=first.device)[1:-1]
        if b < frames:
            ramp[-fade:] = torch.minimum(ramp[-fade:], torch.linspace(1, 0, fade + 2, device=first.device)[1:-1])
        out[:, a:b] += part.float() * ramp.view(1, -1, 1)
        weight[:, a:b] += ramp.view(1, -1, 1)
    return out / weight


def sample_windowed(denoiser_for: Callable[[int, int], Denoiser], noise: torch.Tensor, steps: int,
                    callback: Optional[ProgressCallback] = None, window: int = WINDOW_FRAMES,
                    overlap: int = WINDOW_OVERLAP) -> torch.Tensor:
    """DDIM over ``noise`` (B, F, C) in windows: ``denoiser_for(start, stop)`` gives the denoiser of one window.

    Up to ``window`` frames run in one pass, exactly like the reference; longer inputs in windows that overlap
    by ``overlap`` frames and are cross-faded, so memory stays bounded for any length.
    """
    frames = noise.shape[1]
    spans = windows(frames, window, overlap)
    per = len(schedule(steps))
    total = len(spans) * per
    pieces = []
    for n, (a, b) in enumerate(spans):
        progress = None if callback is None else (lambda d, _t, o=n * per: callback(o + d, total))
        pieces.append((a, b, sample_ddim(denoiser_for(a, b), noise[:, a:b], steps, progress)))
    return crossfade(pieces, frames, overlap)
