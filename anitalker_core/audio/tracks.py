"""The voices of a conversation: one track per speaker, all of the same length, and the mix that goes with the
video.

Each face listens to its own track only (its motion is sampled from it, its pauses calmed from it), so the
speakers must come as separate tracks: a stereo recording with one speaker per side splits into two; one mixed
mono track cannot be told apart here (no speaker separation is attempted).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ..errors import AudioError
from .waveform import resample

Track = tuple[torch.Tensor, int]
"""A waveform (C,T) float -1..1 and its sample rate."""


def as_channels(waveform: torch.Tensor, name: str = "audio") -> torch.Tensor:
    """ComfyUI's (B,C,T) (its first clip), (C,T) or (T,) -> (C,T) float32 on the CPU."""
    if not isinstance(waveform, torch.Tensor) or waveform.ndim not in (1, 2, 3) or waveform.shape[-1] == 0:
        shape = tuple(waveform.shape) if isinstance(waveform, torch.Tensor) else type(waveform).__name__
        raise AudioError(f"the {name} must be a waveform (channels, samples) with at least one sample, got {shape}")
    if waveform.ndim == 3:
        waveform = waveform[0]
    if waveform.ndim == 1:
        waveform = waveform[None]
    return waveform.detach().float().cpu()


def split_stereo(waveform: torch.Tensor, sample_rate: int) -> tuple[Track, Track]:
    """A stereo conversation, one speaker per side -> (left, right) as mono tracks."""
    channels = as_channels(waveform, "conversation")
    if channels.shape[0] != 2:
        raise AudioError(f"the conversation has {channels.shape[0]} channel(s), not 2: a stereo recording with one "
                         "speaker on each side splits into two tracks; otherwise give each speaker's own "
                         "recording (one mixed mono track cannot be split by voice)")
    return (channels[:1].clone(), int(sample_rate)), (channels[1:].clone(), int(sample_rate))


def same_length(tracks: Sequence[Track]) -> list[Track]:
    """Every track at the highest rate among them, padded with silence at the end to the longest: each speaker's
    motion is then sampled for the whole conversation, frame for frame in step with the others."""
    if not tracks:
        raise AudioError("a conversation needs at least one speaker's track")
    rate = max(int(r) for _, r in tracks)
    waves = [resample(as_channels(w), int(r), rate) if int(r) != rate else as_channels(w) for w, r in tracks]
    length = max(w.shape[-1] for w in waves)
    return [(torch.nn.functional.pad(w, (0, length - w.shape[-1])), rate) for w in waves]


def mix(tracks: Sequence[Track]) -> Track:
    """The tracks summed (at the highest rate, the longest length; mono tracks spread over stereo ones), scaled
    down only when the sum would clip."""
    padded = same_length(tracks)
    channels = max(w.shape[0] for w, _ in padded)
    total = sum(w.expand(channels, -1) if w.shape[0] == 1 else w[:channels] for w, _ in padded)
    peak = float(total.abs().max())
    return (total / peak if peak > 1 else total), padded[0][1]


def window(waveform: torch.Tensor, sample_rate: int, start_s: float, duration_s: float) -> torch.Tensor:
    """The samples from ``start_s`` for ``duration_s`` seconds (the last dimension), what goes with a window of a
    clip's frames; shorter where the recording ends first."""
    first = max(0, round(start_s * int(sample_rate)))
    return waveform[..., first: first + max(0, round(duration_s * int(sample_rate)))]


def follow_order(track: Track, order: np.ndarray, fps: float) -> torch.Tensor:
    """A footage's sound (C,T) in the order its frames are shown at ``fps``: runs of frames going forward play as
    recorded, runs going backward play reversed, a held frame is silent."""
    waveform, rate = as_channels(track[0]), int(track[1])
    per = rate / float(fps)
    out = torch.zeros(waveform.shape[0], round(len(order) * per))
    start = 0
    while start < len(order):
        end = start + 1
        step = int(order[end] - order[start]) if end < len(order) else 1
        if step in (1, -1, 0):
            while end < len(order) and int(order[end] - order[end - 1]) == step:
                end += 1
        else:  # a jump (a loop starting again): this frame alone, forward
            step = 1
        first, last = int(order[start]), int(order[end - 1])
        if step == 1:
            piece = waveform[:, round(first * per): round((last + 1) * per)]
        elif step == -1:
            piece = waveform[:, round(last * per): round((first + 1) * per)].flip(-1)
        else:
            piece = waveform[:, :0]
        a, b = round(start * per), round(end * per)
        out[:, a: a + min(b - a, piece.shape[-1])] = piece[:, : b - a]
        start = end
    return out


def dub_track(speech: Track, footage: Optional[Track], order: np.ndarray, fps: float, talking: int,
              level: float = 0.0) -> Track:
    """The sound of a dub: the speech over its ``talking`` frames, with the footage's own sound (following the
    frames' ``order``) underneath at ``level``, and at full level after the speech where the footage goes on."""
    if not 0 <= float(level) <= 1:
        raise AudioError(f"the footage's sound level must be from 0 to 1, got {level}")
    voices = [speech] + ([footage] if footage is not None else [])
    rate = max(int(r) for _, r in voices)
    length = round(len(order) / float(fps) * rate)
    spoken = as_channels(speech[0])
    if int(speech[1]) != rate:
        spoken = resample(spoken, int(speech[1]), rate)
    said = round(talking / float(fps) * rate)
    voice = torch.nn.functional.pad(spoken[:, :said], (0, length - min(said, spoken.shape[-1])))
    if footage is None or (level == 0 and talking >= len(order)):
        return voice, rate
    own = as_channels(footage[0])
    if int(footage[1]) != rate:
        own = resample(own, int(footage[1]), rate)
    under = follow_order((own, rate), order, fps)[:, :length]
    under = torch.nn.functional.pad(under, (0, length - under.shape[-1]))
    gain = torch.full((length,), float(level))
    gain[said:] = 1.0
    return mix([(voice, rate), (under * gain, rate)])
