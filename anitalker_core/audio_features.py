"""Speech features for the motion generator: HuBERT hidden states (50 Hz) or MFCC + deltas (100 Hz).

Both reproduce what the official feature extraction computes, so the released stage-2 weights see the
inputs they were trained on.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from .errors import AudioError, MissingWeightsError
from .types import FPS, AudioFeatures

log = logging.getLogger(__name__)

RATE = 16000
HUBERT_HZ = 50
MFCC_HZ = 100


class WindowedFrontEnd(torch.nn.Module):
    """HuBERT's convolutional front end run in windows aligned to its stride.

    It is local (one frame per 320 samples, 400-sample receptive field, per-frame layer norms), so windows give
    exactly the one-pass result while its 512-channel activations at 3.2 kHz, the largest tensors of the
    model, stay a few hundred MB even for minutes of speech.
    """

    def __init__(self, inner: torch.nn.Module, window_frames: int) -> None:
        super().__init__()
        self.inner = inner
        self.window_frames = max(1, window_frames)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        total = HubertFeatures.frames_for(values.shape[-1])
        if total <= self.window_frames:
            return self.inner(values)
        pieces = []
        for a in range(0, total, self.window_frames):
            b = min(total, a + self.window_frames)
            pieces.append(self.inner(values[..., a * 320: (b - 1) * 320 + 400]))
        return torch.cat(pieces, dim=-1)


class HubertFeatures:
    """Every hidden state of a HuBERT model, stacked (layers+1, 2F, hidden), at exactly 50 Hz.

    transformers 5 dropped the final layer norm from ``hidden_states[-1]`` for stable-layer-norm models; the
    official features (made with 4.x) include it, so the last entry is taken from ``last_hidden_state``.
    """

    kind = "hubert"

    def __init__(self, model_dir: Union[str, Path], device: Optional[Union[str, torch.device]] = None,
                 dtype: Optional[torch.dtype] = None, chunk_seconds: float = 30.0) -> None:
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise MissingWeightsError(
                f"the HuBERT audio encoder folder {model_dir} is missing or incomplete (no config.json); put "
                "chinese-hubert-large (config.json, preprocessor_config.json, pytorch_model.bin) there, from "
                "https://huggingface.co/TencentGameMate/chinese-hubert-large, or use the MFCC audio encoder")
        from transformers import HubertModel, Wav2Vec2FeatureExtractor

        self.model_dir = model_dir
        self.device = torch.device(device or "cpu")
        self.dtype = dtype or torch.float32
        try:
            # sdpa: memory-efficient attention, so minutes of speech fit in one exact pass
            self.model = HubertModel.from_pretrained(str(model_dir), attn_implementation="sdpa")
        except (OSError, ValueError, RuntimeError) as exc:
            raise MissingWeightsError(f"could not load the HuBERT model from {model_dir}: {str(exc)[:300]}") from exc
        self.model.eval().requires_grad_(False).to(self.device)
        if self.model.config.feat_extract_norm == "layer":
            self.model.feature_extractor = WindowedFrontEnd(self.model.feature_extractor, int(chunk_seconds * HUBERT_HZ))
        if (model_dir / "preprocessor_config.json").is_file():
            self.extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(model_dir))
        else:
            self.extractor = Wav2Vec2FeatureExtractor(do_normalize=True, sampling_rate=RATE)
        self.chunk_seconds = chunk_seconds

    def to(self, device: Union[str, torch.device]) -> "HubertFeatures":
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def _normalize(self, wave16k: torch.Tensor) -> torch.Tensor:
        values = self.extractor(wave16k.numpy(), sampling_rate=RATE, padding=True, do_normalize=True,
                                return_tensors="pt").input_values
        return values[0]

    @torch.no_grad()
    def _hidden_states(self, values: torch.Tensor) -> torch.Tensor:
        use_autocast = self.device.type == "cuda" and self.dtype in (torch.float16, torch.bfloat16)
        with torch.autocast("cuda", dtype=self.dtype, enabled=use_autocast):
            out = self.model(values.unsqueeze(0).to(self.device), output_hidden_states=True)
        states = list(out.hidden_states)
        states[-1] = out.last_hidden_state
        return torch.stack([s[0].float().cpu() for s in states])  # (L+1, T, H)

    @staticmethod
    def frames_for(samples: int) -> int:
        """HuBERT's convolutional front end yields one frame per 320 samples after a 400-sample window."""
        return 0 if samples < 400 else (samples - 400) // 320 + 1

    def __call__(self, wave16k: torch.Tensor) -> AudioFeatures:
        if wave16k.numel() < 400:
            raise AudioError(f"the audio is {wave16k.numel() / RATE * 1000:.0f} ms long; HuBERT needs at least 25 ms")
        states = self._hidden_states(self._normalize(wave16k))
        states = torch.cat([states, states[:, -1:]], dim=1)  # one frame of edge padding, as the official code
        frames = states.shape[1] // 2
        return AudioFeatures(kind="hubert", values=states[:, : 2 * frames].contiguous(), num_frames=frames,
                             duration_s=wave16k.numel() / RATE)


@lru_cache(maxsize=4)
def _mel_filterbank(nfilt: int = 26, nfft: int = 512, rate: int = RATE) -> torch.Tensor:
    """Triangular filters on FFT bins floored from mel-spaced points (python_speech_features' layout)."""
    hz2mel = lambda hz: 2595 * np.log10(1 + hz / 700.0)  # noqa: E731
    mel2hz = lambda mel: 700 * (10 ** (mel / 2595.0) - 1)  # noqa: E731
    mels = np.linspace(hz2mel(0), hz2mel(rate / 2), nfilt + 2)
    bins = np.floor((nfft + 1) * mel2hz(mels) / rate)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        lo, mid, hi = int(bins[j]), int(bins[j + 1]), int(bins[j + 2])
        for i in range(lo, mid):
            fb[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(mid, hi):
            fb[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    return torch.from_numpy(fb)


def _delta(feat: torch.Tensor, n: int) -> torch.Tensor:
    """Regression deltas over +-n frames with edge padding."""
    padded = torch.cat([feat[:1].expand(n, -1), feat, feat[-1:].expand(n, -1)])
    weights = torch.arange(-n, n + 1, dtype=feat.dtype)
    windows = padded.unfold(0, 2 * n + 1, 1)  # (T, C, 2n+1)
    return (windows * weights).sum(-1) / (2 * sum(i * i for i in range(1, n + 1)))


def mfcc(wave16k: torch.Tensor, numcep: int = 13, nfilt: int = 26, nfft: int = 512, preemph: float = 0.97,
         ceplifter: int = 22, win: int = 400, hop: int = 160) -> torch.Tensor:
    """(T,) 16 kHz -> (rows, 13) MFCCs with log energy as coefficient 0 (float64, like the reference)."""
    import torchaudio.functional as AF

    x = wave16k.double()
    x = torch.cat([x[:1], x[1:] - preemph * x[:-1]])
    n = x.numel()
    rows = 1 if n <= win else 1 + math.ceil((n - win) / hop)
    x = torch.nn.functional.pad(x, (0, (rows - 1) * hop + win - n))
    frames = x.unfold(0, win, hop)
    power = torch.fft.rfft(frames, nfft).abs().square() / nfft
    tiny = np.finfo(float).eps
    energy = power.sum(1)
    energy = torch.where(energy == 0, torch.full_like(energy, tiny), energy)
    bands = power @ _mel_filterbank(nfilt, nfft).t()
    bands = torch.where(bands == 0, torch.full_like(bands, tiny), bands)
    dct = AF.create_dct(numcep, nfilt, norm="ortho").double()  # (nfilt, numcep)
    ceps = bands.log() @ dct
    lift = 1 + (ceplifter / 2.0) * torch.sin(math.pi * torch.arange(numcep, dtype=torch.float64) / ceplifter)
    ceps = ceps * lift
    ceps[:, 0] = energy.log()
    return ceps


class MfccFeatures:
    """MFCC (13, with log energy) + its regression deltas over +-1 and +-2 frames: (4F, 39) at 100 Hz."""

    kind = "mfcc"

    def to(self, device) -> "MfccFeatures":
        return self

    def __call__(self, wave16k: torch.Tensor) -> AudioFeatures:
        ceps = mfcc(wave16k)
        feats = torch.cat([ceps, _delta(ceps, 1), _delta(ceps, 2)], dim=1).float()
        frames = feats.shape[0] // 4
        if frames < 1:
            raise AudioError("the audio is shorter than one video frame (40 ms); give a longer clip")
        return AudioFeatures(kind="mfcc", values=feats[: 4 * frames].contiguous(), num_frames=frames,
                             duration_s=wave16k.numel() / RATE)
