"""The sampler without any network: the schedule and the DDIM loop over a callable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anitalker_core.diffusion.ddim import BETA_END, BETA_START, TRAIN_STEPS, schedule, timesteps, valid_step_counts
from anitalker_core.diffusion.sampling import sample_ddim
from anitalker_core.errors import AniTalkerError, StepCountError

FULL = np.cumprod(1 - np.linspace(BETA_START, BETA_END, TRAIN_STEPS))


def test_respaced_timesteps_and_refused_counts():
    assert timesteps(50) == list(range(0, 1000, 20)) and timesteps(10) == list(range(0, 1000, 100))
    assert len(schedule(50)) == 50 and 37 not in valid_step_counts() and 36 in valid_step_counts()
    # the respaced cumulative alphas are the full schedule's at the kept timesteps
    assert np.allclose(schedule(10).alphas_cumprod, FULL[::100], rtol=1e-12)
    with pytest.raises(StepCountError, match=r"37 sampling steps cannot be spaced evenly .* \[35, 36, 38, 39\]"):
        timesteps(37)
    assert issubclass(StepCountError, AniTalkerError)


def perfect_denoiser(x0: torch.Tensor, calls: list):
    """Knows the clean sample: returns exactly the noise that separates x from x0 at time t."""
    def denoise(x, t):
        calls.append(int(t[0]))
        assert t.shape == (x.shape[0],) and t.dtype == torch.long
        ab = torch.tensor(FULL[int(t[0])], dtype=torch.float64).float()
        return (x - ab.sqrt() * x0) / (1 - ab).sqrt()
    return denoise


def test_ddim_loop_recovers_the_clean_sample_of_a_perfect_denoiser():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 7, 20, generator=g) * 1.6 - 0.8
    noise = torch.randn(2, 7, 20, generator=g)
    calls, progress = [], []
    out = sample_ddim(perfect_denoiser(x0, calls), noise, 10, callback=lambda d, t: progress.append((d, t)))
    assert calls == list(range(900, -1, -100))  # from the most noise down
    assert progress == [(i, 10) for i in range(1, 11)]
    assert float((out - x0).abs().max()) < 1e-5
