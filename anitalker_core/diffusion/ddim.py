"""The DDIM noise schedule (eta = 0) over AniTalker's 1000-step linear-beta diffusion, with a pure step.

No network lives here: ``schedule(steps)`` gives the respaced timesteps and coefficients and ``Schedule.step``
turns a noise prediction into the next sample. The loop that calls a model is ``sampling.sample_ddim``.
The schedule is built in float64 like the training code; coefficients are cast to float32 only when applied,
so trajectories match the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..errors import StepCountError

TRAIN_STEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02
DEFAULT_STEPS = 50
"""Denoising steps of the official demo."""


def valid_step_counts(limit: int = TRAIN_STEPS) -> list[int]:
    """Step counts an integer stride over the 1000 training steps can give exactly."""
    return sorted({len(range(0, TRAIN_STEPS, k)) for k in range(1, limit)})


def step_counts_text(up_to: int = 100) -> str:
    """The valid step counts up to ``up_to`` for people: 'any of 2-36, 38, 40, ..., 100, ...'."""
    counts = [n for n in valid_step_counts() if n <= up_to]
    run = 0
    while run + 1 < len(counts) and counts[run + 1] == counts[run] + 1:
        run += 1
    rest = ", ".join(str(n) for n in counts[run + 1:])
    return f"any of {counts[0]}-{counts[run]}, {rest}, ..."


def timesteps(steps: int) -> list[int]:
    """Training timesteps visited for ``steps`` DDIM steps, ascending (50 -> 0, 20, ..., 980).

    Like the reference, only counts that an integer stride gives exactly are accepted (StepCountError)."""
    for stride in range(1, TRAIN_STEPS):
        if len(range(0, TRAIN_STEPS, stride)) == steps:
            return list(range(0, TRAIN_STEPS, stride))
    near = sorted(valid_step_counts(), key=lambda n: abs(n - steps))[:4]
    raise StepCountError(
        f"{steps} sampling steps cannot be spaced evenly over the {TRAIN_STEPS} training steps; "
        f"choose one of the nearby counts {sorted(near)} (any of 2-36 works)"
    )


def ddim_step(x: torch.Tensor, eps: torch.Tensor, ab: float, ab_prev: float) -> torch.Tensor:
    """One deterministic DDIM update with the clean-latent estimate clamped to [-1, 1]."""
    c = lambda v: torch.tensor(v, dtype=torch.float64).float().to(x.device)  # noqa: E731
    recip, recipm1 = c(np.sqrt(1.0 / ab)), c(np.sqrt(1.0 / ab - 1.0))
    x0 = (recip * x - recipm1 * eps).clamp(-1, 1)
    eps = (recip * x - x0) / recipm1
    ab_prev_t = c(ab_prev)
    return x0 * torch.sqrt(ab_prev_t) + torch.sqrt(1 - ab_prev_t) * eps


@dataclass(frozen=True)
class Schedule:
    """Respaced DDIM schedule; index i runs from ``len(self) - 1`` (most noise) down to 0."""

    timesteps: tuple[int, ...]  # ascending
    alphas_cumprod: np.ndarray  # float64, one per respaced step
    alphas_cumprod_prev: np.ndarray

    def __len__(self) -> int:
        return len(self.timesteps)

    def step(self, eps: torch.Tensor, index: int, x: torch.Tensor) -> torch.Tensor:
        """The sample after respaced step ``index``, given the noise ``eps`` predicted in ``x``."""
        return ddim_step(x, eps, float(self.alphas_cumprod[index]), float(self.alphas_cumprod_prev[index]))


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
