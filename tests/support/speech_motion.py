"""Real speech with a pause in it, motions to calm, and the issue's three measures of a calm pause.

Shared by the calm-silence, plot and node tests and by bench/calm_silence.py (which states the figures).
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from anitalker_core.types import SAMPLE_RATE
from tests.support.golden import MEDIA

RATE = SAMPLE_RATE
PAUSE_AT_S = 4.4
"""Where the pause goes into statue.wav: between two phrases, so it does not cut a word."""
PAUSE_S = 2.0
NOISE_RMS = 1e-3
"""The inserted pause is room noise at -60 dB, not digital silence: closer to a real recording."""


def read_speech(name: str = "statue.wav") -> np.ndarray:
    """A 16-bit PCM wav from the test media as float32 in [-1, 1)."""
    with wave.open(str(MEDIA / name), "rb") as f:
        assert f.getframerate() == RATE and f.getnchannels() == 1
        return np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16).astype(np.float32) / 32768


def speech_with_pause(seconds: float = PAUSE_S, at_s: float = PAUSE_AT_S, seed: int = 0) -> torch.Tensor:
    """statue.wav (16 kHz mono) with ``seconds`` of low room noise inserted at ``at_s``."""
    speech = read_speech()
    cut = int(at_s * RATE)
    noise = np.random.default_rng(seed).normal(0.0, NOISE_RMS, int(seconds * RATE)).astype(np.float32)
    return torch.from_numpy(np.concatenate([speech[:cut], noise, speech[cut:]]))


def band_noise(frames: int, low_hz: float, high_hz: float, rms: float, g: torch.Generator,
               dim: int = 20, fps: float = 25.0) -> torch.Tensor:
    """(frames, dim) Gaussian noise keeping only ``low_hz``..``high_hz``, scaled to ``rms``."""
    spectrum = torch.fft.rfft(torch.randn(frames, dim, generator=g, dtype=torch.float64), dim=0)
    freqs = torch.fft.rfftfreq(frames, 1 / fps)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0
    signal = torch.fft.irfft(spectrum, n=frames, dim=0)
    return signal / signal.std() * rms


def speech_like_latents(frames: int, seed: int = 0, takes: int = 1) -> torch.Tensor:
    """(takes, frames, 20) float32 that moves like generated talking-head motion, pauses or not.

    A head sway (0.05-0.8 Hz, rms 0.5), a mouth rhythm at syllable rates (2-8 Hz, rms 0.2) and frame-level
    jitter (rms 0.02): the generator's habit of mumbling through silence, which calming should remove.
    """
    g = torch.Generator().manual_seed(seed)
    return torch.stack([band_noise(frames, 0.05, 0.8, 0.5, g) + band_noise(frames, 2.0, 8.0, 0.2, g)
                        + band_noise(frames, 0.0, 12.5, 0.02, g) for _ in range(takes)]).float()


def generated_motion(stage2: Path, waveform: torch.Tensor, steps: int = 4, seed: int = 0):
    """A motion sampled for ``waveform`` by the random-weight MFCC full-control generator in the file ``stage2``
    (official layout: ``golden.write_stage2(path, "mfcc_full_control")``).

    The portrait code is random too: the generator only conditions on it, and encoding a real portrait would
    cost a stage-1 model for nothing these tests look at.
    """
    from anitalker_core.audio.features import MfccFeatures
    from anitalker_core.models.checkpoints import load_stage2
    from anitalker_core.pipeline import features_from_audio, generate_motion
    from anitalker_core.types import PortraitCode

    g = torch.Generator().manual_seed(seed)
    portrait = PortraitCode(image=torch.zeros(1, 3, 256, 256), wa=torch.randn(1, 512, generator=g),
                            alpha0=torch.randn(1, 20, generator=g), feats=())
    generator = load_stage2(stage2)
    with torch.inference_mode():
        audio = features_from_audio(MfccFeatures(), waveform, RATE)
        return generate_motion(generator, portrait, audio, seed=seed, steps=steps)


@dataclass(frozen=True)
class CalmFigures:
    """The issue's measures of one calmed pause (steps are L2 norms of frame-to-frame changes of all 20 numbers)."""

    pause_fall: float  # 1 - mean step inside the pause after / before, away from the ramps
    largest_ramp_step: float  # after calming, at the fades in and out
    largest_speech_step: float  # after calming, between speech frames
    far_frames_unchanged: bool  # every frame more than 0.5 s from any pause is bit-identical


def calm_figures(before: torch.Tensor, after: torch.Tensor, weight: torch.Tensor, speech: torch.Tensor,
                 pause: tuple[int, int], fps: float = 25.0) -> CalmFigures:
    """Measure one take (frames, dim) before and after calming, for the pause [start, end) in frames."""
    step_before = (before[1:] - before[:-1]).double().norm(dim=-1)
    step_after = (after[1:] - after[:-1]).double().norm(dim=-1)
    a, b = pause
    inner = [i for i in range(a, b - 1) if weight[i] == 1 and weight[i + 1] == 1]
    ramp = [i for i in range(len(weight) - 1) if 0 < weight[i] < 1 or 0 < weight[i + 1] < 1
            or (weight[i] == 0) != (weight[i + 1] == 0)]
    talk = [i for i in range(len(speech) - 1) if speech[i] and speech[i + 1]]
    near = np.zeros(len(speech), dtype=bool)
    reach = int(round(0.5 * fps))
    for i in np.flatnonzero(~speech.numpy()):
        near[max(0, i - reach): i + reach + 1] = True
    far = torch.from_numpy(~near)
    return CalmFigures(
        pause_fall=float(1 - step_after[inner].mean() / step_before[inner].mean()),
        largest_ramp_step=float(step_after[ramp].max()),
        largest_speech_step=float(step_after[talk].max()),
        far_frames_unchanged=bool(torch.equal(after[far], before[far])),
    )
