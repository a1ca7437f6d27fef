"""Edits of a clip that is rendered on demand: a window of its frames (trim) and operations on its finished pixels
(crop, resize), so a trimmed or cropped clip still renders batch by batch and only what it shows.

A trim is a window of frames found from times the way video editors count them: a start in seconds (negative: from
the end), a duration (0: to the end), frame ``i`` shown at ``i / fps``. A crop follows what 4:2:0 video needs:
clamped to the frame, with an even origin and even sides; a rectangle that is empty or the whole frame changes
nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np

TIME_TOLERANCE_S = 1e-6
"""Times this close to a frame's time count as that frame's (floating-point seconds of 1/fps steps)."""


def frame_window(frames: int, fps: float, start_s: Optional[float] = None, duration_s: Optional[float] = None,
                 strict: bool = False) -> Optional[tuple[int, int]]:
    """(first frame, count) of the frames shown from ``start_s`` for ``duration_s`` seconds, or None when no frame
    is (or, with ``strict``, when the clip ends before the duration is up)."""
    total_s = frames / fps
    start = float(start_s or 0.0)
    if start < 0:
        start = max(total_s + start, 0.0)
    duration = float(duration_s or 0.0)
    if duration < 0:
        return None
    if strict and duration and start + duration > total_s + TIME_TOLERANCE_S:
        return None
    first = math.ceil(start * fps - TIME_TOLERANCE_S)
    stop = frames if not duration else min(frames, math.ceil((start + duration) * fps - TIME_TOLERANCE_S))
    return (first, stop - first) if stop > first else None


class FrameOp(Protocol):
    """An operation on finished frames: samples (n,H,W,C) of any sample type in, the same type out."""

    def size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the output for an input of this size, known without any frame."""
        ...

    def __call__(self, samples: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Crop:
    """A rectangle cut out of every frame, exactly (no resampling)."""

    x: int
    y: int
    width: int
    height: int

    def size(self, width: int, height: int) -> tuple[int, int]:
        return self.width, self.height

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(samples[:, self.y: self.y + self.height, self.x: self.x + self.width])


def even_crop(x: int, y: int, width: int, height: int, frame_width: int, frame_height: int) -> Optional[Crop]:
    """The rectangle clamped into a ``frame_width`` x ``frame_height`` frame with an even origin and even sides; None
    when it is empty or the whole frame (nothing to cut)."""
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        return None
    x = max(0, min(int(x), frame_width - 1))
    y = max(0, min(int(y), frame_height - 1))
    x, y = x - x % 2, y - y % 2
    width, height = min(width, frame_width - x), min(height, frame_height - y)
    if (x, y, width, height) == (0, 0, frame_width, frame_height):
        return None
    width, height = width - width % 2, height - height % 2
    if width <= 0 or height <= 0:
        return None
    return Crop(x, y, width, height)
