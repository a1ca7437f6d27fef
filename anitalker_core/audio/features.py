"""Speech features for the motion generator: HuBERT hidden states (50 Hz) or MFCC + deltas (100 Hz).

Both reproduce what the official feature extraction computes, so the released stage-2 weights see the
inputs they were trained on.
"""

from __future__ import annotations

import json
import logging
import math
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
from torch import nn

from ..device_policy import autocast
from ..errors import AudioError, CheckpointError, MissingWeightsError
from ..weights.files import HUBERT_DIR, HUBERT_REPO, HUBERT_WEIGHTS, is_present, source_of
from ..types import FPS, SAMPLE_RATE, AudioFeatures, AudioKind, ProgressCallback

log = logging.getLogger(__name__)

HUBERT_HZ = 50
MFCC_HZ = 100
ROWS_PER_FRAME: dict[AudioKind, int] = {"hubert": HUBERT_HZ // FPS, "mfcc": MFCC_HZ // FPS}
"""Feature rows per video frame: the generator's speech convolutions bring both kinds down to 25 Hz."""
HUBERT_SOURCE = source_of(HUBERT_DIR)
_HOP = SAMPLE_RATE // HUBERT_HZ  # HuBERT's front end: one frame per 320 samples ...
_FIELD = 400  # ... each seeing a 400-sample (25 ms) window


def hubert_frames(samples: int) -> int:
    """How many 50 Hz frames HuBERT's convolutional front end yields for a waveform of that length."""
    return 0 if samples < _FIELD else (samples - _FIELD) // _HOP + 1


HUBERT_LAYERS = 25
"""chinese-hubert-large's hidden states: the embedding output and 24 transformer layers ..."""
HUBERT_DIM = 1024
"""... of width 1024: what the HuBERT motion generators were trained on."""
MFCC_DIM = 39
"""13 MFCCs with their deltas and delta-deltas per 10 ms row."""
HUBERT_SHAPE = (HUBERT_LAYERS, HUBERT_DIM)
"""(hidden states, width) the motion generators were trained on: chinese-hubert-large's 24 layers + embedding."""
_KNOWN_SHAPES = {(13, 768): "a base model such as chinese-hubert-base or hubert-base-ls960",
                 (49, 1280): "an xlarge model such as hubert-xlarge-ll60k"}


def check_hubert_config(model_dir: Path, expected: tuple[int, int] = HUBERT_SHAPE) -> None:
    """Refuse a speech model the motion generator cannot take, from its config.json, before loading weights.

    Any other size (or a wav2vec2 folder, whose weights HubertModel would silently half-load) would otherwise
    fail much later inside the generator with a bare tensor-size error.
    """
    path = model_dir / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        architectures = config.get("architectures") or []
        kind = str(config.get("model_type") or ("hubert" if any("Hubert" in a for a in architectures) else ""))
        shape = (int(config["num_hidden_layers"]) + 1, int(config["hidden_size"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path} is not a readable HuBERT config ({type(exc).__name__}: {exc}); download "
                              f"chinese-hubert-large again from {HUBERT_SOURCE}") from None
    if kind == "hubert" and shape == expected:
        return
    layers, width = shape[0] - 1, shape[1]
    found = f"a {kind or 'unnamed'} model with {layers} layers of width {width}"
    if kind == "hubert" and shape in _KNOWN_SHAPES:
        found += f" ({_KNOWN_SHAPES[shape]})"
    raise CheckpointError(
        f"the HuBERT folder {model_dir} holds {found}, but the AniTalker motion generators take chinese-hubert-large: "
        f"a hubert model with {expected[0] - 1} layers of width {expected[1]} ({expected[0]} hidden states). "
        f"Put TencentGameMate/chinese-hubert-large ({HUBERT_SOURCE}) in that folder, or choose an mfcc_* motion "
        "generator with the MFCC audio encoder, which needs no HuBERT")


FRONT_END_FRAMES = 25
"""50 Hz frames HuBERT's convolutional front end computes at a time (0.5 s): its first layer makes 512 channels at
3.2 kHz, 390 MB per minute of speech for each tensor, in one piece."""
LAYER_FRAMES = 500
"""Frames each transformer layer takes at a time after its keys and values (10 s): the queries, the attention's
output and everything after it exist for one block, not for the clip."""


class _FrontEndInPieces(nn.Module):
    """HuBERT's convolutional front end over pieces of the waveform that end on frame boundaries. Each output
    frame sees only its own 25 ms (convolutions, and layer norms over channels), so the pieces give the
    one-pass frames."""

    def __init__(self, front_end: nn.Module, frames: int) -> None:
        super().__init__()
        self.front_end, self.frames = front_end, frames

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        total = hubert_frames(values.shape[-1])
        if total <= self.frames:
            return self.front_end(values)
        out: Optional[torch.Tensor] = None
        for a in range(0, total, self.frames):
            b = min(total, a + self.frames)
            piece = self.front_end(values[..., a * _HOP: (b - 1) * _HOP + _FIELD])
            if out is None:
                out = piece.new_empty(*piece.shape[:-1], total)
            out[..., a:b] = piece
        assert out is not None
        return out


class _LayerInBlocks(nn.Module):
    """One HuBERT transformer layer (transformers' ``HubertEncoderLayer``, or its stable-layer-norm form when
    ``pre_norm``; its weights) in blocks of ``frames`` frames: the keys and values of the whole clip first, then
    for each block its queries' attention over them and all that follows (residuals, layer norms, the feed-forward
    network: each frame on its own). Each query's softmax is its own, so the blocks give the one-pass values; the
    layer's peak is its input, the keys, the values and its output, where a plain pass holds about nine tensors of
    that size, and the queries' scores never exist whole either (PyTorch's ``scaled_dot_product_attention``, as
    transformers' ``sdpa`` calls it, picks its memory-efficient kernels). A mask, attention weights or an adapter
    layer go to the layer itself."""

    def __init__(self, inner: nn.Module, frames: int, pre_norm: bool) -> None:
        super().__init__()
        self.inner, self.frames, self.pre_norm = inner, frames, pre_norm

    def forward(self, hidden_states: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                **kwargs) -> torch.Tensor:
        layer, (b, t, width) = self.inner, hidden_states.shape
        if (attention_mask is not None or kwargs.get("output_attentions") or t <= self.frames
                or getattr(layer, "adapter_layer", None) is not None):
            return layer(hidden_states, attention_mask=attention_mask, **kwargs)
        attention, blocks = layer.attention, range(0, t, self.frames)

        def attended(a: int) -> torch.Tensor:
            """What the attention sees of the block from frame ``a``: its input, layer-normed first if pre-norm."""
            x = hidden_states[:, a: a + self.frames]
            return layer.layer_norm(x) if self.pre_norm else x

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, -1, attention.num_heads, attention.head_dim).transpose(1, 2)

        keys, values = None, None
        for a in blocks:
            x = attended(a)
            k, v = attention.k_proj(x), attention.v_proj(x)
            if keys is None or values is None:
                keys, values = k.new_empty(b, t, k.shape[2]), v.new_empty(b, t, v.shape[2])
            keys[:, a: a + k.shape[1]], values[:, a: a + v.shape[1]] = k, v
        assert keys is not None and values is not None
        keys, values = heads(keys), heads(values)
        out: Optional[torch.Tensor] = None
        for a in blocks:
            mixed = nn.functional.scaled_dot_product_attention(heads(attention.q_proj(attended(a))), keys, values,
                                                               scale=attention.scaling)
            y = hidden_states[:, a: a + self.frames] + attention.out_proj(mixed.transpose(1, 2).reshape(b, -1, width))
            if self.pre_norm:
                y = y + layer.feed_forward(layer.final_layer_norm(y))
            else:
                y = layer.layer_norm(y)
                y = layer.final_layer_norm(y + layer.feed_forward(y))
            if out is None:
                out = y.new_empty(b, t, y.shape[2])
            out[:, a: a + y.shape[1]] = y
        assert out is not None
        return out


class HubertFeatures:
    """Every hidden state of a HuBERT model, stacked (layers+1, 2F, hidden), at exactly 50 Hz.

    transformers 5 no longer applies the final layer norm to ``hidden_states[-1]`` for stable-layer-norm
    models; the official features (made with 4.x) include it, so the last entry comes from ``last_hidden_state``
    (identical to ``hidden_states[-1]`` in every other case).

    Any length runs in one pass over the whole clip, as the official code does, in memory that grows with the
    length rather than its square: the convolutional front end runs over pieces of time (it sees each frame on its
    own, so the pieces change nothing; a front end with group norm, which normalizes over the whole clip, runs
    whole), each transformer layer over blocks of frames against the keys and values of the whole clip
    (``_LayerInBlocks``, through PyTorch's memory-efficient attention kernels), and each hidden state is copied out
    as its layer starts instead of being kept until the end. The pieces replace the model's ``feature_extractor``
    and ``encoder.layers.*`` modules after the weights are loaded.

    ``expected_shape`` is what the motion generator takes (25 hidden states of 1024); a folder of another size
    is refused here. Only tests that run a deliberately tiny model pass ``None``.
    """

    kind = "hubert"

    def __init__(self, model_dir: Union[str, Path], device: Optional[Union[str, torch.device]] = None,
                 dtype: Optional[torch.dtype] = None,
                 expected_shape: Optional[tuple[int, int]] = HUBERT_SHAPE) -> None:
        model_dir = Path(model_dir)
        if not is_present(model_dir, HUBERT_DIR):
            raise MissingWeightsError(
                f"the HuBERT audio encoder folder {model_dir} is missing or incomplete: it needs config.json and "
                f"{' or '.join(HUBERT_WEIGHTS)} (preprocessor_config.json too, ideally) of "
                f"{HUBERT_DIR}, from {HUBERT_SOURCE} ({HUBERT_REPO}); download "
                "them there, or use the MFCC audio encoder with an mfcc_* motion generator")
        if expected_shape is not None:
            check_hubert_config(model_dir, expected_shape)
        from transformers import HubertModel, Wav2Vec2FeatureExtractor

        self.model_dir = model_dir
        self.device = torch.device(device or "cpu")
        self.compute_dtype = dtype or torch.float32
        try:
            # sdpa: memory-efficient attention; from_pretrained reads safetensors or torch.load(weights_only)
            self.model = HubertModel.from_pretrained(str(model_dir), attn_implementation="sdpa")
        except (OSError, ValueError, RuntimeError) as exc:
            raise MissingWeightsError(
                f"could not load the HuBERT model from {model_dir} ({str(exc)[:300]}); the files may be damaged: "
                f"download them again from {HUBERT_SOURCE}") from exc
        self.model.eval().requires_grad_(False).to(self.device)
        if self.model.config.feat_extract_norm == "layer":
            self.model.feature_extractor = _FrontEndInPieces(self.model.feature_extractor, FRONT_END_FRAMES)
        self.pre_norm = bool(self.model.config.do_stable_layer_norm)
        layers = self.model.encoder.layers
        for i, layer in enumerate(layers):
            layers[i] = _LayerInBlocks(layer, LAYER_FRAMES, self.pre_norm)
        if (model_dir / "preprocessor_config.json").is_file():
            self.extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(model_dir))
        else:
            # chinese-hubert-large's own settings: zero-mean unit-variance per clip, 16 kHz
            self.extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0,
                                                      do_normalize=True, return_attention_mask=True)

    @property
    def layers(self) -> int:
        """Hidden states per frame: the embedding output and one per transformer layer."""
        return int(self.model.config.num_hidden_layers) + 1

    @property
    def values_per_row(self) -> int:
        """Feature values per 50 Hz row: every hidden state."""
        return self.layers * int(self.model.config.hidden_size)

    @staticmethod
    def video_frames(samples: int) -> int:
        """Video frames the features of a 16 kHz waveform of that length drive: the official count, one frame of
        edge padding (as the code aligns audio with video), then two 50 Hz frames per video frame."""
        return (hubert_frames(samples) + 1) // 2

    def layer_probe(self, frames: int) -> tuple[Callable[[], object], Callable[[], object]]:
        """Two calls over ``frames`` frames of random hidden states, for the estimate to time and measure: one
        transformer layer (what one layer holds while it runs grows with the length), and that layer's
        self-attention alone (its time grows with the square of the length)."""
        c = self.model.config
        heads = int(c.num_attention_heads)
        hidden = torch.randn(1, frames, int(c.hidden_size), device=self.device)
        q = torch.randn(1, heads, frames, int(c.hidden_size) // heads, device=self.device)
        layer = self.model.encoder.layers[0]

        def run_layer() -> object:
            with torch.inference_mode(), autocast(self.device, self.compute_dtype):
                return layer(hidden)

        def attend() -> object:
            with torch.inference_mode(), autocast(self.device, self.compute_dtype):
                return nn.functional.scaled_dot_product_attention(q, q, q)

        return run_layer, attend

    def _normalize(self, wave16k: torch.Tensor) -> torch.Tensor:
        """Per-clip normalization over the whole clip, as the official code."""
        values = self.extractor(wave16k.numpy(), sampling_rate=SAMPLE_RATE, padding=True, do_normalize=True,
                                return_tensors="pt").input_values
        return values[0].float()

    def _hidden_states(self, values: torch.Tensor, keep: Callable[[int, torch.Tensor], None]) -> None:
        """transformers' ``HubertModel`` forward in eval mode without a mask (no dropout, no masking), written out
        so that each tensor is let go once used: its own forward keeps the front end's output, the projected
        features and the position embeddings alive through every layer. ``keep(i, state)`` gets every hidden
        state as it is made, the last one after the final layer norm of the stable-layer-norm form."""
        model, encoder = self.model, self.model.encoder
        extracted = model.feature_extractor(values).transpose(1, 2)
        del values
        hidden = model.feature_projection(extracted)
        del extracted
        hidden = hidden + encoder.pos_conv_embed(hidden)
        if not self.pre_norm:
            hidden = encoder.layer_norm(hidden)
        for index, layer in enumerate(encoder.layers):
            keep(index, hidden)
            hidden = layer(hidden)
        keep(len(encoder.layers), encoder.layer_norm(hidden) if self.pre_norm else hidden)

    def __call__(self, wave16k: torch.Tensor, callback: Optional[ProgressCallback] = None) -> AudioFeatures:
        if wave16k.ndim != 1:
            raise AudioError(f"HuBERT takes a mono 16 kHz waveform [samples], got shape {tuple(wave16k.shape)}; "
                             "pass it through prepare_waveform first")
        total = hubert_frames(wave16k.numel())
        if total < 1:
            raise AudioError(f"the audio is {wave16k.numel() / SAMPLE_RATE * 1000:.0f} ms long; HuBERT needs at least 25 ms")
        frames = self.video_frames(wave16k.numel())
        kept = min(total, 2 * frames)
        out = torch.empty(self.layers, 2 * frames, int(self.model.config.hidden_size))

        def keep(index: int, state: torch.Tensor) -> None:
            out[index, :kept].copy_(state[0, :kept])
            if callback is not None:
                callback(index + 1, self.layers)

        with torch.inference_mode(), autocast(self.device, self.compute_dtype):
            self._hidden_states(self._normalize(wave16k.detach().cpu()).unsqueeze(0).to(self.device), keep)
        if kept < 2 * frames:
            out[:, kept] = out[:, kept - 1]
        return AudioFeatures(kind="hubert", values=out, num_frames=frames, duration_s=wave16k.numel() / SAMPLE_RATE)


@lru_cache(maxsize=4)
def _mel_filterbank(nfilt: int = 26, nfft: int = 512, rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(nfilt, nfft/2+1) triangles on FFT bins floored from mel-spaced points (python_speech_features' layout)."""
    def to_mel(hz):
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def to_hz(mel):
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    edges = np.floor((nfft + 1) * to_hz(np.linspace(to_mel(0.0), to_mel(rate / 2), nfilt + 2)) / rate)
    bins = np.arange(nfft // 2 + 1, dtype=np.float64)[None]
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.where((bins >= lo) & (bins < mid), (bins - lo) / (mid - lo), 0.0)
        falling = np.where((bins >= mid) & (bins < hi), (hi - bins) / (hi - mid), 0.0)
    return torch.from_numpy(rising + falling)


@lru_cache(maxsize=4)
def _dct_ortho(numcep: int, nfilt: int) -> torch.Tensor:
    """(nfilt, numcep) orthonormal DCT-II in float64: a float32 matrix costs ~3e-4 once log(eps) terms are lifted."""
    n = torch.arange(nfilt, dtype=torch.float64)[:, None]
    k = torch.arange(numcep, dtype=torch.float64)[None]
    basis = torch.cos(math.pi / nfilt * (n + 0.5) * k) * math.sqrt(2.0 / nfilt)
    basis[:, 0] /= math.sqrt(2.0)
    return basis


def _delta(feat: torch.Tensor, n: int) -> torch.Tensor:
    """Regression slope over +-n frames, edges repeated (python_speech_features.delta)."""
    padded = torch.cat([feat[:1].expand(n, -1), feat, feat[-1:].expand(n, -1)])
    weights = torch.arange(-n, n + 1, dtype=feat.dtype)
    windows = padded.unfold(0, 2 * n + 1, 1)  # (T, C, 2n+1)
    return (windows * weights).sum(-1) / (2 * sum(i * i for i in range(1, n + 1)))


def mfcc_rows(samples: int, win: int = 400, hop: int = 160) -> int:
    """How many 10 ms MFCC rows a waveform of that length gives (the last frame zero-padded)."""
    return 1 if samples <= win else 1 + math.ceil((samples - win) / hop)


def mfcc(wave16k: torch.Tensor, numcep: int = 13, nfilt: int = 26, nfft: int = 512, preemph: float = 0.97,
         ceplifter: int = 22, win: int = 400, hop: int = 160) -> torch.Tensor:
    """(T,) 16 kHz float in [-1,1] -> (rows, numcep) MFCCs, coefficient 0 replaced by the log frame energy.

    float64 throughout, as numpy does in the reference: the logs of near-silent bands need it.
    Rows: 1 + ceil((T - win) / hop), the last frame zero-padded.
    """
    x = wave16k.detach().cpu().double()
    x = torch.cat([x[:1], x[1:] - preemph * x[:-1]])
    n = x.numel()
    rows = mfcc_rows(n, win, hop)
    x = torch.nn.functional.pad(x, (0, (rows - 1) * hop + win - n))
    frames = x.unfold(0, win, hop)
    power = torch.fft.rfft(frames, nfft).abs().square() / nfft
    eps = float(np.finfo(float).eps)
    energy = power.sum(1)
    energy = torch.where(energy == 0, torch.full_like(energy, eps), energy)
    bands = power @ _mel_filterbank(nfilt, nfft).t()
    bands = torch.where(bands == 0, torch.full_like(bands, eps), bands)
    ceps = bands.log() @ _dct_ortho(numcep, nfilt)
    if ceplifter > 0:
        ceps = ceps * (1 + (ceplifter / 2.0) * torch.sin(math.pi * torch.arange(numcep, dtype=torch.float64)
                                                          / ceplifter))
    ceps[:, 0] = energy.log()
    return ceps


class MfccFeatures:
    """MFCC (13, log energy first) + regression deltas over +-1 and +-2 frames, as the official demo: (4F, 39)."""

    kind = "mfcc"
    values_per_row = MFCC_DIM

    @staticmethod
    def video_frames(samples: int) -> int:
        """Video frames the features of a 16 kHz waveform of that length drive (4 rows each)."""
        return mfcc_rows(samples) // 4

    def __call__(self, wave16k: torch.Tensor, callback: Optional[ProgressCallback] = None) -> AudioFeatures:
        if wave16k.ndim != 1:
            raise AudioError(f"MFCC takes a mono 16 kHz waveform [samples], got shape {tuple(wave16k.shape)}; "
                             "pass it through prepare_waveform first")
        ceps = mfcc(wave16k)
        feats = torch.cat([ceps, _delta(ceps, 1), _delta(ceps, 2)], dim=1).float()
        frames = feats.shape[0] // 4
        if frames < 1:
            raise AudioError(f"the audio is {wave16k.numel() / SAMPLE_RATE * 1000:.0f} ms long; MFCC features need at least "
                             "46 ms (4 rows of 10 ms) per video frame; give a longer clip")
        if callback is not None:
            callback(1, 1)
        return AudioFeatures(kind="mfcc", values=feats[: 4 * frames].contiguous(), num_frames=frames,
                             duration_s=wave16k.numel() / SAMPLE_RATE)
