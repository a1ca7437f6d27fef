"""The sampling loop: DDIM over any denoiser given as a callable, in one pass over all frames.

The loop knows no network: the model comes in as ``denoise(x, t) -> eps`` and progress and Cancel through
``callback(done, total)``, so the sampler can be tested without a network and the network without a sampler.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ..types import ProgressCallback
from .ddim import schedule

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``denoise(x, t) -> eps``: the noise in samples x (B, F, C) at integer diffusion times t (B,)."""


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
