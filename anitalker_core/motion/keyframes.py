"""Keyframe text: the little language of variance controls and blend curves, read and written.

One key per line or several separated by ``;``::

    0: yaw=0 pitch=0 roll=0 location=0.5 scale=0.5
    50: yaw=20                 # frame 50: turn to 20 degrees; the other values carry over
    2.5s: yaw=-10, scale=0.6   # a time in seconds (25 frames per second) instead of a frame number

* A key starts with a frame number (from 0) or a time with an ``s`` suffix, then ``:``, then ``name=value``
  pairs (names: yaw, pitch, roll, location, scale; separated by spaces or commas). ``#`` starts a comment.
* A value a key does not set is inherited from the key before it; the first key inherits from the constant
  inputs, which also apply at frame 0 when no key is at frame 0.
* Between keys values glide linearly; after the last key they are held. Keys past the end of the audio still
  shape the glide towards them, and the note says so.

JSON is accepted too (text starting with ``[``), handy for generated curves:

* ``[{"frame": 0, "yaw": 0}, {"time": 2.0, "yaw": 30}]``: keys at frames or times (seconds);
* ``[{"yaw": 0}, {"yaw": 1.5}, ...]``: one object per frame;
* ``[[yaw, pitch, roll], ...]``: one pose per frame in degrees, like the official ``--pose_driven_path`` file.

A blend curve is the same syntax with one bare value per key (``0: 0; 50: 1``). ``motion_keyframes`` writes a
take's head pose back as such text, so a good take's head motion can be edited and reused.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterator, Optional

import numpy as np
import torch

from ..errors import ControlError
from ..types import FPS, Motion

FIELDS = ("yaw", "pitch", "roll", "location", "scale")
"""The values a key can set: head pose in degrees, face location and face scale (0..1)."""
MAX_FRAME = 10_000_000
"""Keys beyond this (over four days of video) are certainly typos; refusing them keeps the arithmetic exact."""
EXAMPLE = ("'0: yaw=0 pitch=0' then '50: yaw=20 location=0.4' "
           "(a frame number or a time like 2.5s, a colon, name=value pairs)")

CURVE_EXAMPLE = "'0: 0' then '50: 1' or '2s: 0.5' (a frame number or a time like 2.5s, a colon, a value)"

_PAIR = re.compile(r"([A-Za-z_]+)\s*=\s*([^\s,;=]+)")
_KEY_SPLIT = re.compile(r"\s*;\s*|[,\s]+(?=[-+]?(?:\d+\.?\d*|\.\d+)\s*s?\s*:)")
"""Between keys: a ';', or commas/spaces right before the next key's 'frame:'."""


def check_number(where: str, name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ControlError(f"{where}: {name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ControlError(f"{where}: {name} must be a number like 12.5, got {value!r}") from exc
    if not math.isfinite(number):
        raise ControlError(f"{where}: {name} must be a finite number, got {value!r}")
    return number


def _frame_of(where: str, when: str, fps: float, how: str = f"write keyframes like {EXAMPLE}") -> int:
    """'50' -> 50; '2.5s' -> 62 (at 25 fps)."""
    text = when.strip().lower().replace(" ", "")
    try:
        if text.endswith("s"):
            seconds = float(text[:-1])
            if not math.isfinite(seconds):
                raise ValueError(text)
            frame = round(seconds * fps)  # OverflowError for absurd times, reported below
        else:
            frame = int(text)
    except (ValueError, OverflowError) as exc:
        fractional = re.fullmatch(r"[-+]?\d*\.\d*", text)
        hint = " (frame numbers are whole; add s for seconds, like 2.5s)" if fractional else ""
        raise ControlError(f"{where}: {when.strip()!r} is not a frame number or a time like 2.5s{hint}; "
                           f"{how}") from exc
    return _check_frame(where, frame)


def _check_frame(where: str, frame: int) -> int:
    if frame < 0:
        raise ControlError(f"{where}: frame {frame} is negative; frames count from 0")
    if frame > MAX_FRAME:
        raise ControlError(f"{where}: frame {frame} is beyond {MAX_FRAME} frames; check the key")
    return int(frame)


def _entries(text: str, what: str, fps: float, example: str) -> Iterator[tuple[str, int, str]]:
    """(where, frame, the text after the colon) for every key of keyframe text, in order.

    Keys are separated by new lines, ``;``, or commas or spaces right before the next key's ``frame:``; ``#``
    starts a comment. This one syntax serves the controls and every per-frame curve."""
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = _KEY_SPLIT.split(line.split("#", 1)[0])
        for part_no, entry in enumerate(parts, start=1):
            entry = entry.strip()
            if not entry:
                continue
            where = f"{what} line {lineno}" + (f" part {part_no}" if len(parts) > 1 else "") + f" ({entry!r})"
            if ":" not in entry:
                raise ControlError(f"{where} has no ':' after the frame; write {what} like {example}")
            when, rest = entry.split(":", 1)
            yield where, _frame_of(where, when, fps, f"write {what} like {example}"), rest


def _parse_text(text: str, fps: float) -> list[tuple[int, dict[str, float]]]:
    keys: list[tuple[int, dict[str, float]]] = []
    for where, frame, rest in _entries(text, "keyframes", fps, EXAMPLE):
        values: dict[str, float] = {}
        for match in _PAIR.finditer(rest):
            name = match.group(1).lower()
            if name not in FIELDS:
                raise ControlError(f"{where}: unknown value {name!r}; use {', '.join(FIELDS)}")
            values[name] = check_number(where, name, match.group(2))
        leftover = _PAIR.sub(" ", rest).replace(",", " ").strip()
        if leftover:
            raise ControlError(f"{where}: {leftover.split()[0]!r} is not name=value; "
                               f"names are {', '.join(FIELDS)}, e.g. yaw=20")
        if not values:
            raise ControlError(f"{where} sets no values; write keyframes like {EXAMPLE}")
        keys.append((frame, values))
    return keys


def _parse_json(text: str, fps: float) -> list[tuple[int, dict[str, float]]]:
    try:
        items = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ControlError(f"keyframes look like JSON but do not parse ({exc}); use e.g. "
                           '[{"frame": 0, "yaw": 0}, {"time": 2.0, "yaw": 30}] or [[yaw, pitch, roll], ...]') from exc
    if not isinstance(items, list) or not items:
        raise ControlError("JSON keyframes must be a non-empty list of objects or of [yaw, pitch, roll] triples")
    timed = [isinstance(it, dict) and ("frame" in it or "time" in it) for it in items]
    if any(timed) and not all(timed):
        raise ControlError("JSON keyframes: either every object has a 'frame' (or 'time'), or none has "
                           "(then they are one per frame)")
    keys = []
    for i, item in enumerate(items):
        where = f"JSON keyframe {i}"
        if isinstance(item, list):
            if len(item) != 3:
                raise ControlError(f"{where}: a pose list needs 3 numbers [yaw, pitch, roll], got {len(item)}")
            keys.append((i, {n: check_number(where, n, v) for n, v in zip(FIELDS, item)}))
            continue
        if not isinstance(item, dict):
            raise ControlError(f"{where} is {type(item).__name__}; use an object like {{\"frame\": 0, \"yaw\": 10}} "
                               "or a list [yaw, pitch, roll]")
        unknown = sorted(set(item) - set(FIELDS) - {"frame", "time"})
        if unknown:
            raise ControlError(f"{where}: unknown value {unknown[0]!r}; use frame or time, and {', '.join(FIELDS)}")
        if "frame" in item:
            frame_value = item["frame"]
            if isinstance(frame_value, bool) or not isinstance(frame_value, int):
                raise ControlError(f"{where}: frame must be a whole number, got {frame_value!r}")
            frame = _check_frame(where, frame_value)
        elif "time" in item:
            seconds = check_number(where, "time", item["time"])
            if not math.isfinite(seconds * fps):
                raise ControlError(f"{where}: time {seconds:g} s is beyond any audio length; check the key")
            frame = _check_frame(where, round(seconds * fps))
        else:
            frame = i
        values = {n: check_number(where, n, item[n]) for n in FIELDS if n in item}
        if not values:
            raise ControlError(f"{where} sets no values; give at least one of {', '.join(FIELDS)}")
        keys.append((frame, values))
    return keys


def parse_keyframes(text: str, base: dict[str, float], fps: float = FPS) -> list[tuple[int, dict[str, float]]]:
    """Keyframe text (see the module docstring) -> [(frame, all five values)] sorted by frame.

    Each key inherits what it does not set from the key before it, the first from ``base``. Two keys on the
    same frame merge, the later one winning.
    """
    text = text or ""
    raw = _parse_json(text, fps) if text.lstrip().startswith("[") else _parse_text(text, fps)
    merged: dict[int, dict[str, float]] = {}
    for frame, values in raw:
        merged.setdefault(frame, {}).update(values)
    out, current = [], dict(base)
    for frame in sorted(merged):
        current = {**current, **merged[frame]}
        out.append((frame, dict(current)))
    return out


def parse_curve(text: str, fps: float = FPS, what: str = "curve") -> list[tuple[int, float]]:
    """Curve text in the keyframe syntax with one bare value per key ('0: 0; 50: 1; 4s: 0.5') -> [(frame, value)]
    sorted by frame; of two keys on one frame the later wins."""
    if not isinstance(text, str):
        raise ControlError(f"the {what} must be text, got {type(text).__name__}")
    merged: dict[int, float] = {}
    for where, frame, rest in _entries(text, what, fps, CURVE_EXAMPLE):
        merged[frame] = check_number(where, "the value", rest.strip())
    if not merged:
        raise ControlError(f"the {what} has no keys; write it like {CURVE_EXAMPLE}")
    return sorted(merged.items())


KEY_TOLERANCE_DEG = 1.0
"""Default largest gap, in degrees, between a pose curve and the keyframes written for it."""
KEY_TOLERANCE = 0.01
"""The same for face location and scale (0..1)."""
_DECIMALS = {"yaw": 2, "pitch": 2, "roll": 2, "location": 3, "scale": 3}


def _simplify(curves: np.ndarray) -> list[int]:
    """Frames to keep so that linear interpolation between them stays within 1 in every column of ``curves``.

    Ramer-Douglas-Peucker with the vertical error: split each span at its worst frame until every span fits.
    ``curves`` (frames, channels) is already divided by each channel's tolerance.
    """
    last = curves.shape[0] - 1
    keep = {0, last}
    spans = [(0, last)] if last > 1 else []
    while spans:
        a, b = spans.pop()
        t = (np.arange(a + 1, b) - a) / (b - a)
        line = curves[a] + t[:, None] * (curves[b] - curves[a])
        error = np.abs(curves[a + 1:b] - line).max(axis=1)
        worst = int(np.argmax(error))
        if error[worst] > 1.0:
            mid = a + 1 + worst
            keep.add(mid)
            spans += [(a, mid)] * (mid - a > 1) + [(mid, b)] * (b - mid > 1)
    return sorted(keep)


def format_keyframes(pose_deg: torch.Tensor, location: Optional[torch.Tensor] = None,
                     scale: Optional[torch.Tensor] = None, fps: float = FPS,
                     tolerance_deg: float = KEY_TOLERANCE_DEG, tolerance: float = KEY_TOLERANCE) -> str:
    """Per-frame pose (frames, 3) in degrees, optional location and scale (frames, 1) -> keyframe text.

    The inverse of ``parse_keyframes``: ``resolve(make_control(keyframes=text), frames)`` gives back the
    curves within ``tolerance_deg`` (pose) and ``tolerance`` (location, scale), plus the rounding of the
    written values (0.005 degrees, 0.0005). Keys sit only where the curves bend (a few per second for head
    motion), so the text stays short enough to edit. A key leaves out a value equal to the one before it.
    """
    columns, names = [], []
    for name, t, width in (("pose", pose_deg, 3), ("location", location, 1), ("scale", scale, 1)):
        if t is None:
            continue
        t = torch.as_tensor(t).detach().cpu().double()
        if t.ndim != 2 or t.shape[1] != width or t.shape[0] < 1:
            raise ControlError(f"the {name} curve must be (frames, {width}), got {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ControlError(f"the {name} curve contains NaN or infinite values")
        columns.append(t)
        names += list(FIELDS[:3]) if name == "pose" else [name]
    if not columns or names[0] != "yaw":
        raise ControlError("keyframes need a pose curve (frames, 3) of yaw, pitch and roll in degrees")
    if len({c.shape[0] for c in columns}) != 1:
        raise ControlError(f"the curves have different lengths {[c.shape[0] for c in columns]}; give one per frame")
    tol_deg = check_number("keyframes", "tolerance_deg", tolerance_deg)
    tol = check_number("keyframes", "tolerance", tolerance)
    if tol_deg <= 0 or tol <= 0:
        raise ControlError(f"keyframe tolerances must be positive, got {tol_deg:g} degrees and {tol:g}")
    values = torch.cat(columns, dim=1).numpy()
    scales = np.array([tol_deg if n in FIELDS[:3] else tol for n in names])
    frames = _simplify(values / scales)
    lines, previous = [], {}
    for frame in frames:
        row = {n: round(float(v), _DECIMALS[n]) + 0.0 for n, v in zip(names, values[frame])}  # + 0.0: no "-0"
        changed = [n for n in names if previous.get(n) != row[n]]
        if not changed:
            if frame == frames[-1]:
                break  # the values hold after the last key anyway
            changed = names[:1]  # an inner key must stay: the glide turns there
        pairs = " ".join(f"{n}={row[n]:.{_DECIMALS[n]}f}".rstrip("0").rstrip(".") for n in changed)
        lines.append(f"{frame}: {pairs}  # {frame / fps:.2f} s")
        previous = row
    return "\n".join(lines)


def motion_keyframes(motion: Motion, take: int = 0, tolerance_deg: float = KEY_TOLERANCE_DEG,
                     tolerance: float = KEY_TOLERANCE) -> str:
    """Keyframe text for one take's head pose, face location and scale as the variance adapter used them.

    Feed it to Variance Control to edit a good take's head motion and sample again with it.
    """
    if motion.pose_deg is None:
        raise ControlError("this motion carries no head pose: it was sampled by an audio-only generator, taken "
                           "from a driving video or loaded from a file saved without one; sample it with a "
                           "pose_only or full_control motion generator")
    takes = int(motion.pose_deg.shape[0]) if motion.pose_deg.ndim == 3 else 0
    if isinstance(take, bool) or not isinstance(take, (int, np.integer)) or not -takes <= take < takes:
        raise ControlError(f"take {take!r} does not exist: this motion has {takes} take(s), numbered 0 to {takes - 1}")

    def pick(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        return None if t is None else torch.as_tensor(t)[take]

    text = format_keyframes(pick(motion.pose_deg), pick(motion.location), pick(motion.scale), fps=motion.fps,
                            tolerance_deg=tolerance_deg, tolerance=tolerance)
    seed = f" (seed {motion.seeds[take]})" if len(motion.seeds) == takes else ""
    keys = text.count("\n") + 1
    return (f"# take {take % takes}{seed}: {keys} keys for {motion.pose_deg.shape[1]} frames at {motion.fps:g} fps; "
            f"pose within {tolerance_deg:g} deg, location and scale within {tolerance:g}\n{text}")
