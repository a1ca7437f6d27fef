"""One face followed through a shot: found every few frames, held through short gaps, found again after a cut, and
smoothed so a paste along it does not jitter.

The face to follow is chosen the way Load Portrait chooses one (0: the largest, 1: the leftmost, ...) on the frame
the portrait is taken from; from there the track goes forward and backward, each time to the face nearest where it
was. A face that turns up far from where the track was (a cut, another person) is taken only once the track has
been lost for longer than a short gap, and again by the same rule. Between the frames looked at, and across gaps
shorter than ``HOLD_S``, positions are interpolated; longer gaps have no face (those frames stay as they are). The
positions are smoothed with a centred Gaussian within each stretch the face is seen in: no lag, and a cut is
never smoothed across.

Only numbers are kept (a face's centre and side per frame), so memory does not grow with the frames' size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..errors import PortraitError
from ..types import CropBox, ProgressCallback
from .face_detection import Face, detect_faces, is_confirmed
from .portrait_crop import CENTER_SHIFT, DEFAULT_MARGIN, choose_face

DETECT_SIDE = 640
"""Longer side frames are shrunk to for detection: faces in footage are large, and it keeps detection cheap."""
HOLD_S = 0.5
"""Gaps (no face found) up to this long are bridged; longer ones leave the footage as it is."""
SMOOTH_S = 0.06
"""Standard deviation of the smoothing, in seconds: removes the detector's frame-to-frame wobble (a few pixels)
while a head turn (a few hundred milliseconds) keeps its timing."""
NEAR = 0.5
"""A face belongs to the track when its centre is within this share of the track's face side from it..."""
SIZES = (0.7, 1.45)
"""... and its side within these ratios of the track's."""
BATCH = 16
"""Frames read at a time."""

EVERY = 2
"""Frames from one look for the face to the next, by default: the face is followed in between."""


@dataclass(frozen=True)
class FollowOptions:
    """Which face to follow and how: ``face`` 0 the largest, 1 the leftmost, ...; ``portrait_frame`` the frame its
    look is taken from (None: the first frame it is clearly seen in); ``every`` frames from one look to the next."""

    face: int = 0
    portrait_frame: Optional[int] = None
    every: int = EVERY


FrameReader = Callable[[list[int], int], np.ndarray]
"""``read(indices, max_side)`` -> (n,h,w,3) uint8 frames, shrunk to ``max_side``."""


@dataclass(frozen=True)
class FaceTrack:
    """The face's centre x, y and side (footage pixels) in every frame (NaN where there is none), the frame the
    portrait is taken from, and the footage's size."""

    faces: np.ndarray
    portrait_frame: int
    width: int
    height: int
    every: int
    note: str = ""

    @property
    def frame_count(self) -> int:
        return int(self.faces.shape[0])

    @property
    def present(self) -> np.ndarray:
        """(frames,) bool: whether the face is there."""
        return np.isfinite(self.faces[:, 0])

    def crop_boxes(self, margin: float = DEFAULT_MARGIN) -> np.ndarray:
        """(frames,3) int: the square (x0, y0, side) around the face in each frame, framed as Load Portrait frames
        a detected face (NaN rows where there is no face stay 0)."""
        cx, cy, side = self.faces[:, 0], self.faces[:, 1], self.faces[:, 2]
        crop = np.maximum(8, np.round(side * (1 + margin)))
        x0 = np.round(cx - crop / 2)
        y0 = np.round(cy - CENTER_SHIFT * side - crop / 2)
        boxes = np.stack([x0, y0, crop], axis=1)
        return np.where(np.isfinite(boxes), boxes, 0).astype(np.int64)

    def crop_box(self, frame: int, margin: float = DEFAULT_MARGIN) -> CropBox:
        """The crop of one frame as a portrait's crop box."""
        x0, y0, side = (int(v) for v in self.crop_boxes(margin)[frame])
        return CropBox(x0, y0, side, self.width, self.height, mode="manual")


def _faces_in(frame: np.ndarray, scale: float, thorough: bool = False) -> list[Face]:
    return [Face(f.x / scale, f.y / scale, f.size / scale) for f in detect_faces(frame, thorough)]


def _near(face: Face, at: np.ndarray) -> float:
    """How far ``face`` is from the track position ``at`` (cx, cy, side), in track face sides; inf when its size
    does not fit."""
    ratio = face.size / at[2]
    if not SIZES[0] <= ratio <= SIZES[1]:
        return math.inf
    return math.hypot(face.cx - at[0], face.cy - at[1]) / at[2]


def _follow(found: dict[int, list[Face]], order: list[int], start: np.ndarray, face: int, width: int, height: int,
            hold: int) -> dict[int, np.ndarray]:
    """The track's position at each frame of ``order`` (frames looked at, walking away from the portrait frame)."""
    track: dict[int, np.ndarray] = {}
    last, last_frame = start, order[0]
    for j in order:
        candidates = found.get(j, [])
        pick = None
        if candidates:
            nearest = min(candidates, key=lambda f: _near(f, last))
            if _near(nearest, last) <= NEAR:
                pick = nearest
            elif (len(candidates) == 1 and face <= 1) or (abs(j - last_frame) > hold and face <= len(candidates)):
                # a cut (or a move faster than the detector looks): the one face there, or after a longer gap the
                # face the rule picks
                pick = choose_face(candidates, face, width, height)
        if pick is not None:
            last, last_frame = np.array([pick.cx, pick.cy, pick.size]), j
            track[j] = last
    return track


def _fill(known: dict[int, np.ndarray], frames: int, hold: int, every: int) -> np.ndarray:
    """Per-frame positions: interpolated between known frames up to ``hold`` frames apart (held, not interpolated,
    across a cut: a jump of more than ``NEAR``), held up to ``hold`` frames before the first and after the last;
    across a longer gap each side holds only until the next frame looked at (``every``), and the rest is NaN."""
    out = np.full((frames, 3), np.nan)
    keys = sorted(known)
    for a, b in zip(keys, keys[1:]):
        if _is_cut(known[a], known[b]) and b - a <= hold:
            out[a: b] = known[a]
            out[b] = known[b]
        elif b - a <= hold:
            t = (np.arange(a, b + 1) - a) / (b - a)
            out[a: b + 1] = known[a] + (known[b] - known[a]) * t[:, None]
        else:
            out[a: a + every] = known[a]
            out[b - every + 1: b + 1] = known[b]
    if keys:
        out[max(0, keys[0] - hold): keys[0] + 1] = known[keys[0]]
        out[keys[-1]: min(frames, keys[-1] + hold + 1)] = known[keys[-1]]
    return out


def _is_cut(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether the face jumped from position ``a`` to ``b`` (cx, cy, side) rather than moved."""
    return _near(Face(b[0] - b[2] / 2, b[1] - b[2] / 2, b[2]), a) > NEAR


def _smoothed(faces: np.ndarray, sigma: float) -> np.ndarray:
    """A centred Gaussian along each run of frames with a face, never across a cut (the side in log space: size
    changes are relative)."""
    from scipy.ndimage import gaussian_filter1d

    if sigma <= 0:
        return faces
    out = faces.copy()
    present = np.isfinite(faces[:, 0])
    breaks = [i for i in range(1, len(faces))
              if present[i] != present[i - 1] or (present[i] and _is_cut(faces[i - 1], faces[i]))]
    bounds = [0, *breaks, len(faces)]
    for a, b in zip(bounds, bounds[1:]):
        if not present[a]:
            continue
        run = faces[a:b].copy()
        run[:, 2] = np.log(run[:, 2])
        run = gaussian_filter1d(run, sigma, axis=0, mode="nearest")
        run[:, 2] = np.exp(run[:, 2])
        out[a:b] = run
    return out


def track_face(read: FrameReader, frames: int, width: int, height: int, fps: float, face: int = 0,
               portrait_frame: Optional[int] = None, every: int = EVERY,
               callback: Optional[ProgressCallback] = None) -> FaceTrack:
    """Follow face ``face`` (0: the largest; 1, 2, ...: counted from the left) through ``frames`` frames that
    ``read`` gives, looking every ``every`` frames. ``portrait_frame``: the frame the face is chosen on and the
    portrait taken from (None: the first frame where the face is clearly seen, both eyes found)."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise PortraitError(f"look for the face every {every!r} frames: give a whole number from 1")
    if portrait_frame is not None and not 0 <= portrait_frame < frames:
        raise PortraitError(f"portrait frame {portrait_frame} is past the end: the footage has {frames} frames "
                            f"(0 to {frames - 1})")
    scale = min(1.0, DETECT_SIDE / max(width, height))
    looked = list(range(0, frames, every))
    if portrait_frame is not None and portrait_frame not in looked:
        looked = sorted(set(looked) | {portrait_frame})
    found: dict[int, list[Face]] = {}
    clear: Optional[int] = None
    for s in range(0, len(looked), BATCH):
        part = looked[s: s + BATCH]
        small = read(part, DETECT_SIDE)
        for j, image in zip(part, small):
            faces = _faces_in(image, scale)
            if faces:
                found[j] = faces
                if clear is None and portrait_frame is None and face <= len(faces) \
                        and is_confirmed(image, _shrunk(choose_face(faces, face, width, height), scale)):
                    clear = j
        if callback is not None:
            callback(min(s + BATCH, len(looked)), len(looked))
    if not found:
        raise PortraitError(f"no face was found in the footage: {len(looked)} of its {frames} frames were looked at "
                            f"(every {every}{'th' if every > 1 else ''} from frame 0); give footage where a face "
                            "is seen, or look at every frame (every 1)")
    start_frame = portrait_frame if portrait_frame is not None else (clear if clear is not None else min(found))
    if start_frame in found:  # numbered as Load Portrait numbers them: every face, not only the quick ones
        found[start_frame] = _faces_in(read([start_frame], DETECT_SIDE)[0], scale, thorough=True)
    if start_frame not in found:
        seen = sorted(found)
        raise PortraitError(f"no face in frame {start_frame}, the portrait frame; faces were found in frames "
                            f"{seen[0]} to {seen[-1]} ({len(seen)} of {len(looked)} looked at): pick one of those")
    first = choose_face(found[start_frame], face, width, height)
    start = np.array([first.cx, first.cy, first.size])
    hold = max(every, round(HOLD_S * fps))
    forward = [j for j in looked if j >= start_frame]
    backward = [j for j in reversed(looked) if j <= start_frame]
    known = {**_follow(found, backward, start, face, width, height, hold),
             **_follow(found, forward, start, face, width, height, hold)}
    faces = _smoothed(_fill(known, frames, hold, every), SMOOTH_S * fps)
    missing = frames - int(np.isfinite(faces[:, 0]).sum())
    note = (f"face followed in {frames - missing} of {frames} frames"
            + (f"; the other {missing} stay as they are (no face)" if missing else ""))
    return FaceTrack(faces, start_frame, width, height, every, note)


def _shrunk(face: Face, scale: float) -> Face:
    """A face in the shrunk frame's pixels (where its eyes are looked for)."""
    return Face(face.x * scale, face.y * scale, face.size * scale)
