"""A shot with a talking head that moves, made from the shipped driving video: its frames scaled and panned over a
backdrop, so where the face is in every frame is known exactly."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from tests.support.golden import MEDIA

DRIVING = MEDIA / "driving_talking_face.mp4"


@dataclass(frozen=True)
class Shot:
    path: Path
    width: int
    height: int
    fps: Fraction
    frames: int
    heads: np.ndarray
    """(frames,3): where the driving frame sits in each shot frame: x0, y0 and side in pixels."""
    faces: np.ndarray
    """(frames,3): the face's centre x, y and side in each shot frame: where it is in the driving frame on its own
    (the talking head moves inside it), carried to where that frame was put."""

    def face(self, frame: int) -> tuple[float, float, float]:
        return tuple(float(v) for v in self.faces[frame])


_DRIVING: tuple[list[np.ndarray], list] = ([], [])
"""The driving video's frames read so far and the face found in each alone: read once per process, as far as the
longest shot asked for (every shot starts at the first frame)."""


def driving(count: int) -> tuple[list[np.ndarray], list]:
    """(frames, faces) of the driving video's first ``count`` frames."""
    from anitalker_core.image.face_detection import detect_faces

    frames, faces = _DRIVING
    if len(frames) < count:
        frames.clear()
        with av.open(str(DRIVING)) as container:
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
                frames[-1].flags.writeable = False
                if len(frames) == count:
                    break
        faces.extend(detect_faces(frame)[0] for frame in frames[len(faces):])
    return frames[:count], faces[:count]


def backdrop(width: int, height: int) -> np.ndarray:
    """A soft diagonal gradient with a few large discs: texture a paste must leave untouched, no face in it."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([60 + 80 * x / width, 90 + 60 * y / height, 120 + 40 * (x + y) / (width + height)], -1)
    for cx, cy, r, tone in ((0.15, 0.2, 0.12, 40), (0.85, 0.75, 0.1, -30), (0.5, 0.9, 0.08, 25)):
        disc = (x - cx * width) ** 2 + (y - cy * height) ** 2 < (r * width) ** 2
        base[disc] += tone
    return np.clip(base, 0, 255).astype(np.uint8)


def write_shot(path: Path, width: int = 480, height: int = 270, fps: Fraction = Fraction(30), frames: int = 24,
               side: int = 200, travel: float = 0.35, hidden=(), tone_hz: float = 0.0, cut_at: int = 0) -> Shot:
    """``frames`` frames of the driving video at ``side`` px panned left to right across a backdrop (over
    ``travel`` of the width), growing a little, at ``fps``: H.264, lossless enough (crf 12) that the paste's
    changes are what a test sees. In the frames of ``hidden`` the backdrop shows alone (no face); ``tone_hz``: a
    sine tone as the footage's own sound (AAC, 48 kHz mono); from frame ``cut_at`` on (a cut) the head is seen
    mirrored to the other side of the frame."""
    faces, own = driving(frames)  # own: the face in each driving frame alone
    back = backdrop(width, height)
    heads = []
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "12", "preset": "veryfast"}
        sound = None
        if tone_hz:
            sound = container.add_stream("aac", rate=48000)
            sound.layout = "mono"
        for i, face in enumerate(faces):
            t = i / max(1, frames - 1)
            s = round(side * (1 + 0.1 * t))
            x0 = round(width * (0.5 - travel / 2) + width * travel * t - s / 2)
            y0 = round(height / 2 - s / 2 + 0.04 * height * math.sin(2 * math.pi * t))
            if cut_at and i >= cut_at:
                x0 = width - x0 - s
            picture = back.copy()
            scaled = np.asarray(Image.fromarray(face).resize((s, s), Image.BICUBIC))
            xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + s, width), min(y0 + s, height)
            if i not in hidden:
                picture[ya:yb, xa:xb] = scaled[ya - y0: yb - y0, xa - x0: xb - x0]
            heads.append((x0, y0, s))
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            t = np.arange(round(frames / float(fps) * 48000)) / 48000
            wave = (0.3 * np.sin(2 * math.pi * tone_hz * t)).astype(np.float32)[None]
            chunk = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 48000, 0
            for packet in [*sound.encode(chunk), *sound.encode()]:
                container.mux(packet)
    heads = np.array(heads, dtype=np.float64)
    k = heads[:, 2] / 256
    where = np.stack([heads[:, 0] + np.array([f.cx for f in own]) * k, heads[:, 1] + np.array([f.cy for f in own]) * k,
                      np.array([f.size for f in own]) * k], axis=1)
    return Shot(path, width, height, Fraction(fps), len(faces), heads, where)
