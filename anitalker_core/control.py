"""Variance controls: head pose (yaw, pitch, roll), face location and face scale, constant or keyframed.

Keyframes are text, one per line or separated by ``;``::

    0: yaw=0 pitch=0 roll=0
    2s: yaw=25            # at 2 seconds (50 frames), turn 25 degrees; unspecified values carry over
    100: yaw=-10 scale=0.6

A key is a frame index or a time with an ``s`` suffix. Values between keys are interpolated linearly and
held after the last key. Pose is in degrees (the model was trained on -90..90, normalised by 90).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from .errors import ControlError
from .types import FPS, VarianceControl

FIELDS = ("yaw", "pitch", "roll", "location", "scale")
POSE_LIMIT = 90.0
EXAMPLE = "'0: yaw=0 pitch=0' then '50: yaw=20 location=0.4' (frame or time like 2s, then name=value pairs)"


@dataclass(frozen=True)
class Resolved:
    """Per-frame signals as the motion generator takes them."""

    pose: torch.Tensor  # (1, F, 3) yaw, pitch, roll in degrees/90, clamped to [-1, 1]
    location: torch.Tensor  # (1, F, 1)
    scale: torch.Tensor  # (1, F, 1)
    note: str = ""


def _finite(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise ControlError(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(value):
        raise ControlError(f"{name} must be a finite number, got {value}")
    return value


def parse_keyframes(text: str, base: dict[str, float], fps: float = FPS) -> list[tuple[int, dict[str, float]]]:
    """Keyframe text -> sorted [(frame, full set of values)], each key inheriting what it does not set."""
    entries = [e.strip() for e in re.split(r"[;\n]", text or "")]
    keys: dict[int, dict[str, float]] = {}
    for lineno, entry in enumerate(entries, start=1):
        entry = entry.split("#", 1)[0].strip()
        if not entry:
            continue
        if ":" not in entry:
            raise ControlError(f"keyframe {lineno} ({entry!r}) has no ':'; write keyframes like {EXAMPLE}")
        when, values = entry.split(":", 1)
        when = when.strip().lower()
        try:
            frame = round(float(when[:-1]) * fps) if when.endswith("s") else int(when)
        except ValueError as exc:
            raise ControlError(f"keyframe {lineno}: {when!r} is not a frame number or a time like 2.5s; "
                               f"write keyframes like {EXAMPLE}") from exc
        if frame < 0:
            raise ControlError(f"keyframe {lineno}: frame {frame} is negative")
        pairs = {}
        for item in values.replace(",", " ").split():
            if "=" not in item:
                raise ControlError(f"keyframe {lineno}: {item!r} is not name=value; names are {', '.join(FIELDS)}")
            name, value = item.split("=", 1)
            name = name.strip().lower()
            if name not in FIELDS:
                raise ControlError(f"keyframe {lineno}: unknown value {name!r}; use {', '.join(FIELDS)}")
            pairs[name] = _finite(f"keyframe {lineno} {name}", value)
        if not pairs:
            raise ControlError(f"keyframe {lineno} sets no values; write keyframes like {EXAMPLE}")
        keys.setdefault(frame, {}).update(pairs)
    out, current = [], dict(base)
    for frame in sorted(keys):
        current = {**current, **keys[frame]}
        out.append((frame, dict(current)))
    return out


def make_control(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0, location: float = 0.5,
                 scale: float = 0.5, keyframes: str = "") -> VarianceControl:
    """Constant controls, optionally animated by keyframes. Values outside the trained range are clamped (noted)."""
    base = {n: _finite(n, v) for n, v in zip(FIELDS, (yaw, pitch, roll, location, scale))}
    keys = parse_keyframes(keyframes, base) if keyframes and keyframes.strip() else []
    if not keys:
        keys = [(0, base)]
    elif keys[0][0] != 0:
        keys.insert(0, (0, base))
    notes = []
    rows = torch.tensor([[k[1][n] for n in FIELDS] for k in keys], dtype=torch.float32)
    pose, loc, scl = rows[:, :3], rows[:, 3:4], rows[:, 4:5]
    if (pose.abs() > POSE_LIMIT).any():
        notes.append(f"head pose beyond +-{POSE_LIMIT:g} degrees (the trained range) was clamped")
        pose = pose.clamp(-POSE_LIMIT, POSE_LIMIT)
    for name, t in (("face location", loc), ("face scale", scl)):
        if ((t < 0) | (t > 1)).any():
            notes.append(f"{name} outside 0..1 was clamped")
    return VarianceControl(pose_deg=pose, location=loc.clamp(0, 1), scale=scl.clamp(0, 1),
                           frames=tuple(k[0] for k in keys), note="; ".join(notes))


def _interpolate(values: torch.Tensor, frames: tuple[int, ...], num_frames: int) -> torch.Tensor:
    """(K, C) keys at ``frames`` -> (num_frames, C), linear between keys and held outside them."""
    t = torch.arange(num_frames, dtype=torch.float32)
    keys = torch.tensor(frames, dtype=torch.float32)
    cols = [np.interp(t.numpy(), keys.numpy(), values[:, c].numpy()) for c in range(values.shape[1])]
    return torch.from_numpy(np.stack(cols, axis=1)).float()


def resolve(control: VarianceControl, num_frames: int) -> Resolved:
    """A VarianceControl -> per-frame signals for ``num_frames`` video frames."""
    if num_frames < 1:
        raise ControlError("the control needs at least one video frame")
    k = control.pose_deg.shape[0]
    frames = control.frames if control.frames is not None else tuple(range(k)) if k > 1 else (0,)
    if len(frames) != k:
        raise ControlError(f"the control has {k} keys but {len(frames)} frame positions")
    notes = []
    late = [f for f in frames if f >= num_frames]
    if late:
        notes.append(f"{len(late)} keyframe(s) at or after frame {num_frames} (the end of the audio) were not reached")
    values = torch.cat([control.pose_deg / POSE_LIMIT, control.location, control.scale], dim=1).float()
    per_frame = values.expand(num_frames, -1) if k == 1 else _interpolate(values, frames, num_frames)
    pose = per_frame[:, :3].clamp(-1, 1)
    return Resolved(pose=pose.unsqueeze(0).contiguous(), location=per_frame[:, 3:4].unsqueeze(0).contiguous(),
                    scale=per_frame[:, 4:5].unsqueeze(0).contiguous(), note="; ".join(notes))
