"""Where the speaker talks and where they pause: energy-based voice activity on the motion's own frames.

Frame i of the result spans samples ``[i * 16000 / fps, (i + 1) * 16000 / fps)`` of the 16 kHz waveform:
at 25 fps that is samples 640 i .. 640 i + 639, exactly where HuBERT (frames 2i, 2i+1, hop 320) and the MFCC
front end (rows 4i .. 4i+3, hop 160) start motion frame i, so ``speech[i]`` speaks about motion frame i.

Loudness alone decides, because a pause in this sense is simply "nothing audible is being said". The threshold
adapts to the clip: it sits ``SPEECH_DROP_DB`` below the clip's speech level (the 95th percentile of frame
loudness), or higher in a noisy recording (a share of the way from the noise floor, the 10th percentile, up to
the speech level), never below the absolute floor ``FLOOR_DB`` and never within ``MIN_HEADROOM_DB`` of the
speech level. Speech frames are then widened by a hangover, and quiet runs shorter than the minimum pause
(stop consonants, breaths between words) count as speech.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..errors import AudioError
from ..types import FPS, SAMPLE_RATE, Motion, check_motion
from .waveform import prepare_waveform

SPEECH_DROP_DB = 30.0
"""The threshold lies this far below the speech level in a clean recording (quiet fricatives are ~25 dB down)."""
NOISE_SHARE = 0.4
"""In a noisy recording the threshold lies this share of the way (in dB) from the noise floor to the speech level."""
MIN_HEADROOM_DB = 12.0
"""The threshold never comes closer than this to the speech level, even in a clip with no pause at all."""
FLOOR_DB = -65.0
"""Frames quieter than this (dB relative to full scale) are never speech."""
HIGHPASS_HZ = 60.0
"""Rumble, hum and DC offset below this carry no speech; they are removed before measuring loudness."""
MIN_PAUSE_S = 0.5
HANGOVER_S = 0.08


@dataclass(frozen=True)
class Pause:
    """A pause: frames ``start`` (inclusive) to ``end`` (exclusive) and the same in seconds."""

    start: int
    end: int
    start_s: float
    end_s: float

    @property
    def frames(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class VoiceActivity:
    """Per-frame speech mask (frames,) bool, the pauses it leaves, and the loudness figures behind it."""

    speech: torch.Tensor
    pauses: tuple[Pause, ...]
    fps: float
    loudness_db: torch.Tensor
    threshold_db: float
    note: str = ""

    @property
    def num_frames(self) -> int:
        return int(self.speech.numel())

    def describe(self) -> str:
        """One line for the user: how many pauses, and where."""
        if not self.pauses:
            return "no pauses found" + (f" ({self.note})" if self.note else "")
        spans = ", ".join(f"{p.start_s:.2f}-{p.end_s:.2f} s" for p in self.pauses)
        return f"{len(self.pauses)} pause(s): {spans}" + (f" ({self.note})" if self.note else "")


def _check_seconds(name: str, value: float, maximum: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise AudioError(f"{name} must be a number of seconds, got {value!r}") from exc
    if not math.isfinite(value) or not 0 <= value <= maximum:
        raise AudioError(f"{name} must be between 0 and {maximum:g} seconds, got {value}")
    return value


def frame_loudness(wave16k: torch.Tensor, num_frames: int, fps: float = FPS) -> torch.Tensor:
    """RMS loudness in dB (full scale = 0 dB) of each motion frame's span of the high-passed 16 kHz waveform.

    Frames past the end of the audio are silent (``FLOOR_DB - 60``), like the padding the features use.
    """
    from scipy.signal import butter, sosfiltfilt

    x = wave16k.detach().cpu().double().numpy()
    if x.size > 3 * 7:  # sosfiltfilt needs a little more than its padding
        x = sosfiltfilt(butter(2, HIGHPASS_HZ / (SAMPLE_RATE / 2), btype="highpass", output="sos"), x)
    edges = np.round(np.arange(num_frames + 1) * (SAMPLE_RATE / fps)).astype(np.int64)
    power = np.concatenate([[0.0], np.cumsum(x * x)])
    starts, ends = np.minimum(edges[:-1], x.size), np.minimum(edges[1:], x.size)
    counts = edges[1:] - edges[:-1]
    energy = (power[ends] - power[starts]) / np.maximum(counts, 1)
    silent = FLOOR_DB - 60
    db = np.where(energy > 0, 10 * np.log10(np.maximum(energy, 1e-30)), silent)
    return torch.from_numpy(np.maximum(db, silent)).float()


def _runs(mask: np.ndarray, value: bool) -> list[tuple[int, int]]:
    """[start, end) of every run of ``value`` in a 1-D bool array."""
    padded = np.concatenate([[0], (mask == value).astype(np.int8), [0]])
    change = np.flatnonzero(np.diff(padded))
    return list(zip(change[::2].tolist(), change[1::2].tolist()))


def detect_voice_activity(waveform: torch.Tensor, sample_rate: int, num_frames: Optional[int] = None,
                          fps: float = FPS, min_pause_s: float = MIN_PAUSE_S,
                          hangover_s: float = HANGOVER_S) -> VoiceActivity:
    """Speech mask and pauses of a recording (any rate and channel layout) on ``num_frames`` motion frames.

    ``num_frames`` defaults to the whole frames the audio spans; pass the motion's frame count to align with
    a motion. A pause is at least ``min_pause_s`` long; speech is widened by ``hangover_s`` on both sides so
    the ends of words stay speech.
    """
    wave16k, note = prepare_waveform(waveform, sample_rate)
    fps = float(fps)
    if not math.isfinite(fps) or fps <= 0:
        raise AudioError(f"the frame rate must be positive, got {fps}")
    min_pause_s = _check_seconds("the minimum pause", min_pause_s, 60.0)
    hangover_s = _check_seconds("the hangover", hangover_s, 5.0)
    if num_frames is None:
        num_frames = max(1, int(wave16k.numel() * fps // SAMPLE_RATE))
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise AudioError(f"the number of frames must be a positive whole number, got {num_frames!r}")
    num_frames = int(num_frames)

    loud = frame_loudness(wave16k, num_frames, fps)
    heard = loud.numpy()[: max(1, min(num_frames, int(wave16k.numel() * fps // SAMPLE_RATE)))]
    speech_db = float(np.percentile(heard, 95))
    noise_db = float(np.percentile(heard, 10))
    threshold = max(FLOOR_DB, speech_db - SPEECH_DROP_DB, noise_db + NOISE_SHARE * (speech_db - noise_db))
    threshold = max(FLOOR_DB, min(threshold, speech_db - MIN_HEADROOM_DB))
    notes = [note] if note else []
    if speech_db < FLOOR_DB + MIN_HEADROOM_DB:
        notes.append(f"the audio is nearly silent (speech level {speech_db:.0f} dB): all of it counts as a pause")

    speech = loud.numpy() > threshold
    hang = int(round(hangover_s * fps))
    if hang:
        from scipy.ndimage import binary_dilation

        speech = binary_dilation(speech, structure=np.ones(2 * hang + 1, dtype=bool))
    shortest = max(1, int(math.ceil(min_pause_s * fps - 1e-9)))
    for a, b in _runs(speech, False):
        if b - a < shortest:
            speech[a:b] = True
    pauses = tuple(Pause(a, b, a / fps, b / fps) for a, b in _runs(speech, False))
    return VoiceActivity(speech=torch.from_numpy(speech.copy()), pauses=pauses, fps=fps, loudness_db=loud,
                         threshold_db=threshold, note="; ".join(notes))


def activity_for(motion: Motion, waveform: torch.Tensor, sample_rate: int,
                 min_pause_s: float = MIN_PAUSE_S) -> VoiceActivity:
    """The speech mask and pauses of the recording that drove ``motion``, on the motion's own frames."""
    check_motion(motion)
    return detect_voice_activity(waveform, sample_rate, motion.num_frames, motion.fps, min_pause_s=min_pause_s)
