"""Variance controls: head pose (yaw, pitch, roll), face location and face scale, constant or keyframed.

The full-control and pose-only motion generators take, per video frame, the head pose normalised as
degrees / 90 (yaw, pitch, roll, in that order), the horizontal face location (0 left .. 1 right) and the face
scale (0 .. 1). The official demo's ``--pose_yaw 0.25`` is therefore ``yaw=22.5`` here: this module speaks
degrees because that is what people picture. Keyframes are written in the text of ``keyframes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ControlError
from ..types import FPS, VarianceControl
from .keyframes import FIELDS, check_number, parse_curve, parse_keyframes

POSE_LIMIT = 90.0
"""Degrees that map to the normalised pose +-1, the range the generators were trained on."""
@dataclass(frozen=True)
class Resolved:
    """Per-frame control signals exactly as the motion generator takes them."""

    pose: torch.Tensor  # (1, F, 3): yaw, pitch, roll as degrees / 90, clamped to [-1, 1]
    location: torch.Tensor  # (1, F, 1) in [0, 1]
    scale: torch.Tensor  # (1, F, 1) in [0, 1]
    note: str = ""


CENTRE = 0.5
"""Face location and scale that keep the portrait's own framing: the middle of the trained 0..1 range."""


def make_control(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0, location: float = CENTRE,
                 scale: float = CENTRE, keyframes: str = "") -> VarianceControl:
    """Constant pose (degrees), face location and face scale, optionally animated by ``keyframes``.

    Pose beyond +-90 degrees (normalised +-1, the trained range) and location/scale outside 0..1 are clamped,
    and the note says so: the generator has never seen such values and would produce garbage.
    """
    base = {n: check_number("control", n, v) for n, v in zip(FIELDS, (yaw, pitch, roll, location, scale))}
    if keyframes is not None and not isinstance(keyframes, str):
        raise ControlError(f"keyframes must be text, got {type(keyframes).__name__}")
    keys = parse_keyframes(keyframes, base) if keyframes and keyframes.strip() else []
    if not keys or keys[0][0] != 0:
        keys.insert(0, (0, base))
    rows = torch.tensor([[values[n] for n in FIELDS] for _, values in keys], dtype=torch.float64)
    pose, location_t, scale_t = rows[:, :3], rows[:, 3:4], rows[:, 4:5]
    notes = []
    wild = [n for i, n in enumerate(FIELDS[:3]) if bool((pose[:, i].abs() > POSE_LIMIT).any())]
    if wild:
        notes.append(f"{'/'.join(wild)} beyond +-{POSE_LIMIT:g} degrees was clamped to +-{POSE_LIMIT:g}: the model was "
                     f"trained on -{POSE_LIMIT:g}..{POSE_LIMIT:g} (normalised -1..1)")
    for name, t in (("face location", location_t), ("face scale", scale_t)):
        if bool(((t < 0) | (t > 1)).any()):
            notes.append(f"{name} outside 0..1 was clamped to 0..1")
    return VarianceControl(
        pose_deg=pose.clamp(-POSE_LIMIT, POSE_LIMIT).float(),
        location=location_t.clamp(0, 1).float(),
        scale=scale_t.clamp(0, 1).float(),
        frames=tuple(frame for frame, _ in keys),
        note="; ".join(notes),
    )


def _check_control(control: VarianceControl) -> tuple[int, tuple[int, ...]]:
    if not isinstance(control, VarianceControl):
        raise ControlError(f"the control is {type(control).__name__}, not an AniTalker control; "
                           "connect the Control node or leave it empty")
    k = int(control.pose_deg.shape[0]) if control.pose_deg.ndim == 2 else -1
    shapes_ok = (k >= 1 and tuple(control.pose_deg.shape) == (k, 3) and tuple(control.location.shape) == (k, 1)
                 and tuple(control.scale.shape) == (k, 1))
    if not shapes_ok:
        raise ControlError(f"the control's signals have shapes pose {tuple(control.pose_deg.shape)}, location "
                           f"{tuple(control.location.shape)}, scale {tuple(control.scale.shape)}; expected (K,3), "
                           "(K,1), (K,1) with K >= 1: build it with make_control")
    for name, t in (("pose", control.pose_deg), ("location", control.location), ("scale", control.scale)):
        if not bool(torch.isfinite(t).all()):
            raise ControlError(f"the control's {name} contains NaN or infinite values")
    frames = control.frames if control.frames is not None else tuple(range(k))
    if len(frames) != k:
        raise ControlError(f"the control has {k} keys but {len(frames)} frame positions")
    if any(int(f) < 0 for f in frames) or any(b <= a for a, b in zip(frames, frames[1:])):
        raise ControlError(f"the control's key frames {frames[:8]} must be non-negative and increasing")
    return k, tuple(int(f) for f in frames)


def _glide(frames: Sequence[int], values: np.ndarray, num_frames: int) -> np.ndarray:
    """Keys (K frames, values (K, C)) -> (num_frames, C): linear between keys, held before the first and after
    the last."""
    if len(frames) == 1:
        return np.repeat(values[:1], num_frames, axis=0)
    t = np.arange(num_frames, dtype=np.float64)
    keys = np.asarray(frames, dtype=np.float64)
    return np.stack([np.interp(t, keys, values[:, c]) for c in range(values.shape[1])], axis=1)


def _unreached(frames: Sequence[int], num_frames: int) -> str:
    late = [f for f in frames if f >= num_frames]
    if not late:
        return ""
    return (f"{len(late)} keyframe(s) (from frame {late[0]}) lie after the last frame ({num_frames - 1}) of the "
            "audio: they were not reached, the motion only glides towards them")


def _check_num_frames(num_frames: Any) -> int:
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ControlError(f"the control needs a positive whole number of video frames, got {num_frames!r}")
    return int(num_frames)


def resolve(control: VarianceControl, num_frames: int) -> Resolved:
    """A VarianceControl -> per-frame signals for ``num_frames`` video frames (linear between keys, held after)."""
    num_frames = _check_num_frames(num_frames)
    _, frames = _check_control(control)
    values = torch.cat([control.pose_deg.double() / POSE_LIMIT, control.location.double(),
                        control.scale.double()], dim=1)
    per_frame = torch.from_numpy(_glide(frames, values.numpy(), num_frames)).float()
    pose = per_frame[:, :3].clamp(-1, 1)
    location = per_frame[:, 3:4].clamp(0, 1)
    scale = per_frame[:, 4:5].clamp(0, 1)
    return Resolved(pose=pose.unsqueeze(0).contiguous(), location=location.unsqueeze(0).contiguous(),
                    scale=scale.unsqueeze(0).contiguous(), note=_unreached(frames, num_frames))


def curve(text: str, num_frames: int, fps: float = FPS, what: str = "curve") -> tuple[torch.Tensor, str]:
    """Curve text -> (num_frames,) float32 values gliding between keys like the controls do, and a note."""
    num_frames = _check_num_frames(num_frames)
    keys = parse_curve(text, fps, what)
    frames = [f for f, _ in keys]
    values = np.asarray([[v] for _, v in keys], dtype=np.float64)
    return torch.from_numpy(_glide(frames, values, num_frames)[:, 0]).float(), _unreached(frames, num_frames)




def describe(control: VarianceControl, constants: Sequence[float], names: Sequence[str] = FIELDS) -> str:
    """Which values the keyframes drive and which come from the constants (a node's sliders), so a slider never
    misleads; ``names`` labels the five values as the user sees them."""
    rows = torch.cat([control.pose_deg, control.location, control.scale], dim=1).double()
    limits = ((-POSE_LIMIT, POSE_LIMIT),) * 3 + ((0.0, 1.0),) * 2
    keyed = [name for name, column, value, (lo, hi) in zip(names, rows.T, constants, limits)
             if not torch.allclose(column, torch.full_like(column, min(max(float(value), lo), hi)), atol=1e-4)]
    if not keyed:
        return "constant: " + ", ".join(f"{name} {float(value):g}" for name, value in zip(names, constants))
    frames = control.frames or (0,)
    free = [name for name in names if name not in keyed]
    given = f"; the sliders give {', '.join(free)}" if free else "; the sliders are not used"
    return f"{len(frames)} keys (frames {frames[0]}-{frames[-1]}): keyframes drive {', '.join(keyed)}{given}"
