"""The sampler's start noise: one seeded draw per take, or the official demo's noise bit for bit."""

from __future__ import annotations

import torch

from ..errors import AniTalkerError
from ..weights.variants import get_variant
from ..types import MOTION_DIM

SEED_MODES = ("torch", "official")
DEFAULT_SEED_MODE = SEED_MODES[0]
"""PyTorch's generator seeded once per take; "official" replays the official demo's draws."""
"""torch: a generator seeded with the seed, portable and fast. official: the official demo's exact noise."""

_DRAW_CHUNK = 1 << 24
"""Uniform draws replayed at a time, so replaying tens of millions needs little memory."""


def official_start_noise(seed: int, variant: str, num_frames: int) -> torch.Tensor:
    """The official demo's start noise for ``seed``: it seeds the global RNG, builds the model (consuming the
    variant's ``official_rng_draws`` uniform draws), then draws ``randn((1, F, 20))``; replayed here."""
    g = torch.Generator().manual_seed(int(seed))
    skip = get_variant(variant).official_rng_draws
    while skip > 0:
        n = min(_DRAW_CHUNK, skip)
        torch.empty(n).uniform_(generator=g)
        skip -= n
    return torch.randn((1, num_frames, MOTION_DIM), generator=g)


def start_noise(variant: str, num_frames: int, seed: int, takes: int, seed_mode: str) -> torch.Tensor:
    """(takes, F, 20) start noise; take i uses seed + i, so N takes equal N single runs with those seeds."""
    if seed_mode not in SEED_MODES:
        raise AniTalkerError(f"seed mode must be one of {SEED_MODES}, got {seed_mode!r}")
    noises = []
    for i in range(takes):
        if seed_mode == "official":
            noises.append(official_start_noise(seed + i, variant, num_frames))
        else:
            g = torch.Generator().manual_seed(seed + i)
            noises.append(torch.randn((1, num_frames, MOTION_DIM), generator=g))
    return torch.cat(noises, 0)
