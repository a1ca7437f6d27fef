"""Pauses that look like listening: in the speaker's pauses the mouth settles and the head holds still.

The motion generator keeps the mouth moving and the head drifting through silence, and people notice at once.
This edit works on the pauses that ``voice_activity`` finds. The motion is split by speed as Motion Strength
does (``motion_edit.split_by_speed``): the slow part (head turns and sways) and the fast rest (mouth, blinks).
Inside a pause

* the fast part fades out, so each frame settles on the slow path: the head pose (and any slow change of
  expression) with no mumbling on top;
* the slow part is pulled towards a hold, a smooth glide from the head pose where the pause starts to the one
  where it ends; ``head`` is the share of the head's own motion kept around that hold (0 = still, 1 = as
  generated).

The split is linear and keeps constants, so measuring the motion from the portrait's resting code (alpha0)
or from any other code gives the same result: the edit needs no portrait code. The change fades in and out
with raised-cosine ramps that lie inside the pause, so every frame outside a pause is returned bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from ..audio.voice_activity import VoiceActivity
from ..errors import MotionError
from ..types import Motion
from .edit import check_motion, split_by_speed

RAMP_S = 0.2
"""Length of the fade in and out at each inner edge of a pause (shorter pauses fade over half their length)."""
HEAD_KEPT = 0.25
"""Default share of the head's own motion kept in a pause: a listener still moves a little."""


def _check_share(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise MotionError(f"{name} must be a number from 0 to 1, got {value!r}") from exc
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise MotionError(f"{name} must be from 0 to 1, got {value}")
    return value


def _raised_cosine(n: int) -> torch.Tensor:
    """n weights rising from just above 0 to just below 1 (both ends excluded), float64."""
    k = torch.arange(1, n + 1, dtype=torch.float64)
    return 0.5 - 0.5 * torch.cos(math.pi * k / (n + 1))


def calm_weight(activity: VoiceActivity, ramp_s: float = RAMP_S) -> torch.Tensor:
    """(frames,) float64: 0 in speech, 1 deep in a pause, raised-cosine ramps inside the pause's inner edges.

    A pause that touches the start or end of the clip has no ramp there: nothing is said before or after it.
    """
    ramp = max(0, int(round(float(ramp_s) * activity.fps)))
    weight = torch.zeros(activity.num_frames, dtype=torch.float64)
    for pause in activity.pauses:
        a, b = pause.start, pause.end
        w = torch.ones(b - a, dtype=torch.float64)
        fade_in, fade_out = a > 0, b < activity.num_frames
        n = min(ramp, (b - a) // (fade_in + fade_out)) if (fade_in or fade_out) else 0
        if n:
            up = _raised_cosine(n)
            if fade_in:
                w[:n] = up
            if fade_out:
                w[len(w) - n:] = torch.minimum(w[len(w) - n:], up.flip(0))
        weight[a:b] = w
    return weight


def _hold(slow: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """The head's hold through frames a..b-1: an eased glide from slow[a] to slow[b-1], (takes, b-a, dim)."""
    n = b - a
    u = torch.linspace(0, 1, n, dtype=slow.dtype) if n > 1 else torch.zeros(1, dtype=slow.dtype)
    ease = (0.5 - 0.5 * torch.cos(math.pi * u)).view(1, n, 1)
    start, end = slow[:, a:a + 1], slow[:, b - 1:b]
    return start + (end - start) * ease


def calm_silence(motion: Motion, activity: VoiceActivity, strength: float = 1.0, head: float = HEAD_KEPT,
                 ramp_s: float = RAMP_S) -> Motion:
    """Settle the mouth and hold the head in the pauses of ``activity`` (found on this motion's frames).

    ``strength`` 0 returns the latents bit for bit, 1 is fully calm; ``head`` is the share of head motion kept.
    """
    check_motion(motion)
    strength = _check_share("the calm strength", strength)
    head = _check_share("the head motion kept in pauses", head)
    if not isinstance(activity, VoiceActivity):
        raise MotionError(f"expected the voice activity of the audio, got {type(activity).__name__}")
    if activity.num_frames != motion.num_frames or activity.fps != motion.fps:
        raise MotionError(f"the pauses were found on {activity.num_frames} frames at {activity.fps:g} fps but the "
                          f"motion has {motion.num_frames} frames at {motion.fps:g} fps; detect them with the "
                          "motion's frame count and rate (the same audio that drove the motion)")
    found = activity.describe()
    if strength == 0 or not activity.pauses:
        why = "calm strength 0" if strength == 0 else "nothing to calm"
        return replace(motion, latents=motion.latents.clone(), note=f"{found}; {why}: motion unchanged")

    x = motion.latents.double()
    slow, _ = split_by_speed(x, motion.fps)
    target = slow.clone()
    for pause in activity.pauses:
        a, b = pause.start, pause.end
        hold = _hold(slow, a, b)
        target[:, a:b] = hold + head * (slow[:, a:b] - hold)
    g = (strength * calm_weight(activity, ramp_s)).view(1, -1, 1)
    calmed = (x + g * (target - x)).to(motion.latents.dtype)
    out = torch.where(g > 0, calmed, motion.latents).contiguous()
    return replace(motion, latents=out, note=f"{found}; calmed (strength {strength:g}, head motion kept {head:g})")
