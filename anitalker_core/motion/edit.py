"""Cheap edits on motion latents (takes, frames, 20): smoothing, strength, blending, picking takes.

The motion code is only 20 numbers per frame, so these edits cost nothing next to rendering and let artists calm
jitter or head shake without sampling again. Every edit returns a new ``Motion`` whose ``note`` says what was
done; the input is never modified. Edits of the latents keep the motion's pose/location/scale (they describe the
requested pose); edits that cut frames or takes cut those alike.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional, Union

import numpy as np
import torch

from ..errors import MotionError
from ..types import Motion, check_motion
from .control import curve

FILTER_ORDER = 2
"""Butterworth order of the zero-phase low-pass (applied forwards and backwards, so the effective order is 4).

Low enough that a sudden head turn overshoots by only ~4 %, high enough to separate speech (3-8 Hz) from
single-frame wobble (near the 12.5 Hz Nyquist limit at 25 fps)."""

HEAD_SPLIT_HZ = 1.0
"""``scale_strength`` treats motion slower than this as head movement and faster motion as mouth and blinks."""


def _check_factor(name: str, value: float, minimum: float = 0.0) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise MotionError(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(value) or value < minimum:
        raise MotionError(f"{name} must be a finite number of at least {minimum:g}, got {value}")
    return value


def jitter(latents: torch.Tensor) -> float:
    """Mean absolute second difference over frames: how much frame-to-frame motion wobbles (0 for < 3 frames)."""
    if latents.shape[-2] < 3:
        return 0.0
    accel = latents[..., 2:, :] - 2 * latents[..., 1:-1, :] + latents[..., :-2, :]
    return float(accel.abs().mean())


def lowpass(latents: torch.Tensor, cutoff_hz: float, fps: float) -> torch.Tensor:
    """Zero-phase Butterworth low-pass along frames of (takes, frames, dim); keeps dtype and device.

    Zero phase matters: a causal filter would delay the mouth behind the audio. The ends are extended by point
    reflection, so a motion that is drifting at the first or last frame keeps drifting instead of flattening.
    """
    from scipy.signal import butter, sosfiltfilt

    frames = latents.shape[-2]
    nyquist = fps / 2
    if frames < 3 or cutoff_hz >= 0.98 * nyquist:
        return latents.clone()
    sos = butter(FILTER_ORDER, cutoff_hz / nyquist, output="sos")
    x = latents.detach().cpu().double().numpy()
    padlen = min(3 * (2 * len(sos) + 1), frames - 1)
    y = sosfiltfilt(sos, x, axis=-2, padlen=padlen)
    return torch.from_numpy(np.ascontiguousarray(y)).to(dtype=latents.dtype, device=latents.device)


def split_by_speed(latents: torch.Tensor, fps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(slow, fast): motion below ``HEAD_SPLIT_HZ`` (head turns and sways) and the rest (mouth, blinks).

    By speed, not by latent dimension, because AniTalker's 20 numbers mix pose and expression. slow + fast
    is the input again.
    """
    slow = lowpass(latents, HEAD_SPLIT_HZ, fps)
    return slow, latents - slow


def smoothing_cutoff_hz(strength: float, fps: float) -> float:
    """Cut-off of ``smooth``: the Nyquist rate divided by (1 + strength / 2).

    At 25 fps, strength 1 cuts at 8.3 Hz (single-frame wobble goes, 3-6 Hz speech keeps >= 90 % of its
    amplitude), 2 at 6.25 Hz (softer mouth), 10 at 2.1 Hz (only slow drifts remain).
    """
    return fps / 2 / (1 + strength / 2)


def smooth(motion: Motion, strength: float) -> Motion:
    """Remove frame-to-frame jitter without delaying the lips. strength 0 returns an exact copy."""
    check_motion(motion)
    strength = _check_factor("smoothing strength", strength)
    fps = _check_factor("motion fps", motion.fps, minimum=1e-6)
    if strength == 0:
        return replace(motion, latents=motion.latents.clone(), note="smoothing off (strength 0): motion unchanged")
    cutoff = smoothing_cutoff_hz(strength, fps)
    if motion.num_frames < 3:
        return replace(motion, latents=motion.latents.clone(),
                       note=f"motion has only {motion.num_frames} frame(s): nothing to smooth")
    out = lowpass(motion.latents, cutoff, fps)
    return replace(motion, latents=out, note=f"smoothed (strength {strength:g}: motion above {cutoff:.1f} Hz removed)")


def _center(motion: Motion, alpha0: Optional[torch.Tensor]) -> tuple[torch.Tensor, str]:
    """The code motion is scaled around: the given alpha0, else the motion's own, else its temporal mean."""
    for source, code in (("given", alpha0), ("motion's", motion.alpha0)):
        if code is None:
            continue
        code = torch.as_tensor(code)
        if code.numel() != motion.motion_dim or not bool(torch.isfinite(code).all()):
            raise MotionError(f"the {source} portrait motion code has shape {tuple(code.shape)} (or non-finite "
                              f"values) but the motion has {motion.motion_dim} numbers per frame; use the portrait "
                              "this motion was made for")
        return code.reshape(1, 1, -1).to(motion.latents), ""
    return (motion.latents.mean(dim=1, keepdim=True),
            "no portrait motion code in this motion, so it was scaled around its own average pose")


def scale_strength(motion: Motion, strength: float = 1.0, head: Optional[float] = None,
                   mouth: Optional[float] = None, alpha0: Optional[torch.Tensor] = None) -> Motion:
    """Scale how far each frame moves away from the portrait's own motion code: < 1 calmer, > 1 livelier.

    ``head`` and ``mouth`` (default 1) are extra factors multiplied with ``strength`` for the slow part of the
    motion and the fast remainder (``split_by_speed``). The centre is ``alpha0`` if given, else
    ``motion.alpha0``, else the temporal mean (said in the note).
    strength = head = mouth = 1 returns the latents bit for bit.
    """
    check_motion(motion)
    strength = _check_factor("strength", strength)
    head_gain = strength * _check_factor("head strength", 1.0 if head is None else head)
    mouth_gain = strength * _check_factor("mouth strength", 1.0 if mouth is None else mouth)
    if head_gain == 1 and mouth_gain == 1:
        return replace(motion, latents=motion.latents.clone(), note="strength 1: motion unchanged")
    center, note = _center(motion, alpha0)
    dev = motion.latents - center
    if head_gain == mouth_gain:
        out = center + dev * head_gain
    else:
        slow, fast = split_by_speed(dev, _check_factor("motion fps", motion.fps, minimum=1e-6))
        out = center + slow * head_gain + fast * mouth_gain
    text = f"motion strength: head x{head_gain:g}, mouth x{mouth_gain:g}" + (f"; {note}" if note else "")
    return replace(motion, latents=out.contiguous(), note=text)


def _weight_curve(weight: Union[float, torch.Tensor, str], frames: int, fps: float,
                  notes: list[str]) -> torch.Tensor:
    """A scalar, per-frame values or curve text ('0: 0; 50: 1') -> (frames,) float32 blend weights in [0, 1]."""
    if isinstance(weight, str):
        weight, note = curve(weight, frames, fps, what="blend curve")
        notes.append(note)
    try:
        w = torch.as_tensor(weight, dtype=torch.float32).flatten()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise MotionError(f"the blend weight must be a number or a per-frame list of numbers, got {weight!r}") from exc
    if w.numel() == 0:
        raise MotionError("the blend weight curve is empty; give one weight or one per frame")
    if not bool(torch.isfinite(w).all()):
        raise MotionError("the blend weight must be finite (no NaN or infinity)")
    if bool(((w < 0) | (w > 1)).any()):
        notes.append("blend weight outside 0..1 was clamped")
        w = w.clamp(0, 1)
    if w.numel() == 1:
        return w.expand(frames)
    if w.numel() > frames:
        notes.append(f"the weight curve has {w.numel()} values for {frames} frames; the extra values were ignored")
        return w[:frames]
    if w.numel() < frames:
        notes.append(f"the weight curve has {w.numel()} values for {frames} frames; its last value was held")
        return torch.cat([w, w[-1:].expand(frames - w.numel())])
    return w


def blend(a: Motion, b: Motion, weight: Union[float, torch.Tensor, str] = 0.5) -> Motion:
    """Per frame ``(1 - w) * a + w * b``, with w = 0 giving ``a`` and w = 1 giving ``b`` bit for bit.

    ``weight`` is a number, one value per frame (a shorter curve holds its last value) or curve text in the
    keyframe syntax ('0: 0; 2s: 1', see ``control``). Motions of different lengths are cut to the shorter one,
    because padding would invent motion the audio does not have (noted). A single take is blended with every
    take of the other motion; other take counts must match. Metadata (fps, variant, portrait code, pose) comes
    from ``a``.
    """
    check_motion(a, "the first motion")
    check_motion(b, "the second motion")
    if a.motion_dim != b.motion_dim:
        raise MotionError(f"cannot blend motions of different sizes ({a.motion_dim} vs {b.motion_dim} numbers per "
                          "frame): they come from different models")
    if a.num_takes != b.num_takes and 1 not in (a.num_takes, b.num_takes):
        raise MotionError(f"cannot blend {a.num_takes} takes with {b.num_takes} takes; select one take of either "
                          "with Select Take")
    notes: list[str] = []
    frames = min(a.num_frames, b.num_frames)
    if a.num_frames != b.num_frames:
        notes.append(f"motions have {a.num_frames} and {b.num_frames} frames; blended the first {frames}")
    if a.fps != b.fps:
        notes.append(f"motions have different frame rates ({a.fps:g} and {b.fps:g}); frames were paired one to one")
    w = _weight_curve(weight, frames, a.fps, notes).view(1, frames, 1)
    takes = max(a.num_takes, b.num_takes)
    base = a.first_frames(frames, takes)
    la = base.latents
    lb = b.latents[:, :frames].to(la).expand(takes, -1, -1)
    mixed = la + (lb - la) * w.to(la)
    # explicit endpoints: la + (lb - la) * 1 is not always lb in floating point
    out = torch.where(w == 0, la, torch.where(w == 1, lb, mixed)).contiguous()
    seeds = a.seeds if a.num_takes == takes else b.seeds
    return replace(base, latents=out, seeds=seeds, note="; ".join(n for n in notes if n) or "blended")


def select_take(motion: Motion, index: int) -> Motion:
    """One take (numbered from 0; negative counts from the end) as a single-take motion."""
    return check_motion(motion).take(index)
