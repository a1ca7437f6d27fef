"""The motion of a dub: the footage's head with the new speech's mouth, in the footage's own frame order.

The footage's motion (its tracked head encoded frame by frame) and the speech's motion (sampled for the portrait
taken from the footage) are each split by speed (``edit.split_by_speed``): the slow part is the head (turns, sway),
the fast part the mouth and the eyes. The dub keeps the footage's slow part, so the rendered head sits where the
footage's head is and moves with it, and takes the speech's fast part, so the mouth says the new words. Blinks
come from either: the eyes' share of each of the motion's numbers (``eye_share``, measured by rendering) takes
its fast part from the footage or from the speech.

When the speech outlasts the footage, the footage (and its motion) plays forward and backward (ping-pong), loops,
or holds its last frame; when the speech is shorter, the result ends with it, or the footage goes on as it is.
The speech's motion is made at 25 fps and resampled to the footage's rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..errors import MotionError
from .edit import split_by_speed

EXTENDS = ("pingpong", "loop", "hold")
"""How footage shorter than the speech is made long enough: forward then backward, again and again (what other
lip-sync tools do, since it never jumps); from the start again; or its last frame held."""
BLINKS = ("speech", "footage")
"""Where the eyes' quick motion comes from."""


@dataclass(frozen=True)
class DubOptions:
    """How the footage's motion and the speech's are put together; the defaults' one home."""

    extend: str = EXTENDS[0]
    """Footage shorter than the speech: one of ``EXTENDS``."""
    continue_footage: bool = False
    """Speech shorter than the footage: the footage goes on as it is with its own sound (else the result ends
    with the speech)."""
    blinks: str = BLINKS[0]
    head: float = 1.0
    """Strength of the footage's head motion (0: its average pose held; 1: as it moves)."""
    mouth: float = 1.0
    """Strength of the speech's mouth motion."""
    footage_audio: float = 0.0
    """The footage's own sound under the speech: 0 replaces it, 1 keeps it at full level."""

    def check(self) -> "DubOptions":
        if self.extend not in EXTENDS:
            raise MotionError(f"extend {self.extend!r} is not one of: {', '.join(EXTENDS)}")
        if self.blinks not in BLINKS:
            raise MotionError(f"blinks {self.blinks!r} is not one of: {', '.join(BLINKS)}")
        _check_strength("head", self.head)
        _check_strength("mouth", self.mouth)
        if not 0 <= float(self.footage_audio) <= 1:
            raise MotionError(f"the footage's sound level must be from 0 to 1, got {self.footage_audio}")
        return self


def footage_order(footage_frames: int, frames: int, extend: str = "pingpong") -> np.ndarray:
    """(frames,) int64: the footage frame shown at each output frame."""
    if extend not in EXTENDS:
        raise MotionError(f"extend {extend!r} is not one of: {', '.join(EXTENDS)}")
    if footage_frames < 1 or frames < 1:
        raise MotionError(f"need at least one footage frame and one output frame, got {footage_frames} and {frames}")
    k = np.arange(frames, dtype=np.int64)
    if extend == "loop" or footage_frames == 1:
        return k % footage_frames
    if extend == "hold":
        return np.minimum(k, footage_frames - 1)
    period = 2 * (footage_frames - 1)
    phase = k % period
    return np.where(phase < footage_frames, phase, period - phase)


def resample_latents(latents: torch.Tensor, fps_in: float, fps_out: float, frames: int) -> torch.Tensor:
    """(F,D) at ``fps_in`` -> (frames,D) at ``fps_out``: each output frame's time read off the input by linear
    interpolation (the last frame held past the end)."""
    if latents.ndim != 2 or latents.shape[0] == 0:
        raise MotionError(f"expected motion latents (frames, numbers), got {tuple(latents.shape)}")
    t = torch.arange(frames, dtype=torch.float64) * (float(fps_in) / float(fps_out))
    t = t.clamp(max=latents.shape[0] - 1)
    lo = t.floor().long()
    hi = (lo + 1).clamp(max=latents.shape[0] - 1)
    w = (t - lo.double())[:, None]
    src = latents.double()
    return (src[lo] * (1 - w) + src[hi] * w).to(latents.dtype)


def speech_frames(duration_s: float, fps: float) -> int:
    """Output frames that cover speech of ``duration_s`` at the footage's rate."""
    return max(1, int(math.floor(duration_s * float(fps) + 1e-6)))


def _check_strength(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or not 0 <= value <= 2:
        raise MotionError(f"{name} strength must be from 0 to 2, got {value}")
    return value


def dub_latents(footage: torch.Tensor, speech: torch.Tensor, order: np.ndarray, fps: float, talking: int,
                eye_share: Optional[torch.Tensor] = None, blinks: str = "speech", head: float = 1.0,
                mouth: float = 1.0) -> torch.Tensor:
    """The dub's latents (len(order), D).

    footage (N,D): the footage's motion at ``fps``, frame by frame in its own order; speech (S,D): the speech's
    motion already at ``fps``; order: the footage frame of each output frame; talking: how many output frames carry
    the speech (later ones keep the footage's own motion: the footage goes on there as it is). ``eye_share`` (D,)
    0..1: how much each number moves the eyes rather than the mouth (needed when ``blinks`` is "footage");
    ``head``, ``mouth``: strengths of the footage's head motion (around its mean) and of the speech's mouth
    motion.
    """
    if blinks not in BLINKS:
        raise MotionError(f"blinks {blinks!r} is not one of: {', '.join(BLINKS)}")
    if blinks == "footage" and eye_share is None:
        raise MotionError("blinks from the footage need the eyes' share of the motion (eye_share)")
    head, mouth = _check_strength("head", head), _check_strength("mouth", mouth)
    idx = torch.as_tensor(order, dtype=torch.long)
    foot = footage.double()
    foot_slow, foot_fast = (t[0] for t in split_by_speed(foot[None], fps))
    center = foot_slow.mean(dim=0, keepdim=True)
    slow = center + head * (foot_slow[idx] - center)
    spoken = speech.double()[:talking]
    if spoken.shape[0] < talking:
        spoken = torch.cat([spoken, spoken[-1:].expand(talking - spoken.shape[0], -1)])
    _, speech_fast = (t[0] for t in split_by_speed(spoken[None], fps))
    fast = foot_fast[idx].clone()
    share = eye_share.double().clamp(0, 1)[None] if eye_share is not None else torch.zeros(1, foot.shape[1],
                                                                                        dtype=torch.float64)
    eyes = foot_fast[idx[:talking]] if blinks == "footage" else speech_fast
    fast[:talking] = mouth * (1 - share) * speech_fast + share * eyes
    return (slow + fast).to(footage.dtype)
