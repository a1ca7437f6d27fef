"""Offline face detection with the Haar cascades that ship inside the OpenCV 4.x wheel.

Why this detector
-----------------
The pack must find the face without downloading anything at run time and without a compiler, inside the
packages ComfyUI users already have. OpenCV 4.x wheels (``opencv-python`` / ``-headless``) carry the Haar
cascades in ``cv2.data.haarcascades``; the pack already needs OpenCV, so detection adds no dependency.

Measured on the sample portraits (frontal "default" cascade, image as given; box = x, y, side in pixels):

=================  =========  =================  ==========================
image              size       face box           also found by
=================  =========  =================  ==========================
aiface2.png        256x256    50, 52, 170        alt2
aiface7.png (RGBA) 684x684    164, 193, 441      alt2
cartoon_girl.png   512x512    103, 170, 288      alt2, profile
monalisa.jpg       512x512    67, 117, 294       alt2, profile
statue.jpg         512x512    104, 117, 341      alt2
=================  =========  =================  ==========================

Every portrait is found by the first cascade, in 30-130 ms on one CPU core. The "default" cascade's boxes
are also the most consistent in scale from image to image (best calibration of the crop margin, see
``portrait_crop``), so it is tried first; "alt2" and the profile cascade (both facing directions) are
fallbacks for faces the first one misses.

Alternatives considered: ``mediapipe==0.10.14`` (last release with the legacy face detector whose
``.tflite`` models are inside the wheel; wheels for CPython 3.8-3.12 only) requires jax, jaxlib,
matplotlib, sounddevice, opencv-contrib-python (which clashes with opencv-python-headless) and pins
protobuf < 5, a heavy and conflict-prone addition to a ComfyUI environment; mediapipe 1.x and >= 0.10.31
ship no usable legacy models; OpenCV's YuNet (``cv2.FaceDetectorYN``) needs an ONNX file the wheel does not
carry; dlib compiles from source. OpenCV 5.x wheels ship no cascades, hence the ``< 5`` pin.

Several candidates are checked before any takes a number. A cascade also fires on textures that only resemble a
face (at the seam between two pictures, in hair or foliage), usually smaller than the real faces beside it. A
candidate is confirmed when the eye cascade finds two eyes in its upper part and the "alt2" cascade finds a face
around it; one that is not confirmed is dropped when it is less than half the size of a confirmed face. Measured
on the sample media, every real face is confirmed (the five portraits and every tenth frame of the driving video:
photo-like generated faces, a painting, a statue, a cartoon), and of 41 false candidates the default cascade found
in 160 pictures made of the portraits' shuffled tiles, none was (``tests/test_portrait_crop.py``). Profiles, which
show one eye, are never confirmed, so they are kept unless a confirmed face twice their size stands beside them.

Images are scaled to at most 1024 px on the longest side before detection (an 8000x8000 picture costs the
same as a 1024x1024 one: 3 s and 1.6 GB peak including the 0.8 GB input tensor) and tiny ones up to
192 px so that the cascades' 24 px window can fit a face (a 32x32 head shot is still found). Each cascade
runs on the histogram-equalised image first (what the table above and the margin calibration use) and
then on the plain one: equalisation brings out dim faces but drowns a small face in a large flat
background (a 512 px face in a 2048 px white picture is only found without it).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

log = logging.getLogger(__name__)

CASCADES = (
    "haarcascade_frontalface_default.xml",
    "haarcascade_frontalface_alt2.xml",
    "haarcascade_profileface.xml",
)
EYE_CASCADES = ("haarcascade_eye.xml", "haarcascade_eye_tree_eyeglasses.xml")
CONFIRM_SIDE = 160
"""Side a candidate face is resized to before its eyes are looked for (the eye cascades' windows are 20-24 px)."""
MIN_UNCONFIRMED_SHARE = 0.5
"""A candidate that is not confirmed is dropped when smaller than this share of a confirmed face's side."""
DETECT_SIDE = 1024
"""Longest side the detector works at; larger images are shrunk first (speed and memory)."""
MIN_SIDE = 192
"""Smaller images are enlarged to this longest side so that a face can span several detector windows."""


@dataclass(frozen=True)
class Face:
    """A detected face as a square in source-image pixels (the cascades return squares)."""

    x: float
    y: float
    size: float

    @property
    def cx(self) -> float:
        return self.x + self.size / 2

    @property
    def cy(self) -> float:
        return self.y + self.size / 2


@lru_cache(maxsize=None)
def _cascade(name: str):
    import cv2

    path = os.path.join(cv2.data.haarcascades, name)
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(
            f"OpenCV's bundled face cascade {path} could not be loaded; reinstall opencv-python-headless>=4,<5")
    return cascade


def _detector_view(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """Grayscale copy at detector resolution, and its scale relative to the source."""
    import cv2

    h, w = rgb.shape[:2]
    longest = max(h, w)
    scale = 1.0
    if longest > DETECT_SIDE:
        scale = DETECT_SIDE / longest
    elif longest < MIN_SIDE:
        scale = MIN_SIDE / longest
    if scale < 1.0:  # shrink the colour image first: grayscale of an 8000 px picture is not needed
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    if scale > 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_CUBIC)
    return gray, scale


def smallest_face(gray: np.ndarray) -> int:
    """The smallest face side the cascades look for in the detector's view: a tenth of its shorter side."""
    return max(20, min(gray.shape) // 10)


def detect_faces(rgb: np.ndarray, thorough: bool = True) -> list[Face]:
    """Faces in an (H,W,3) uint8 RGB image, largest first, in source pixels; [] when none is found.

    The cascades are tried in order (each on the equalised, then the plain grayscale image) and the first
    that finds anything wins, so one image never mixes boxes of different cascades (their scales differ), except
    that ``thorough`` also takes confirmed faces the next cascade finds apart from those (a second face the first
    missed): what numbering faces needs, and twice the time, which following one face through a shot does not.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise TypeError(f"detect_faces expects an (H,W,3) uint8 array, got {rgb.shape} {rgb.dtype}")
    import cv2

    gray, scale = _detector_view(rgb)
    min_face = smallest_face(gray)
    # Histogram equalisation helps on dim or low-contrast portraits (and the margin is calibrated with it),
    # but a face small in a large flat background loses its contrast to it, so the plain image is the fallback.
    views = (cv2.equalizeHist(gray), gray)
    for i, name in enumerate(CASCADES):
        for view in views:
            found = _run_cascade(name, view, min_face, scale)
            if found:
                faces = _distinct(found)
                if thorough:
                    faces += _more_faces(rgb, views, faces, CASCADES[i + 1:i + 2], min_face, scale)
                if len(faces) > 1:
                    faces = _confirmed(rgb, faces)
                log.debug("%s found %d face(s)", name, len(faces))
                return faces
    return []


def _more_faces(rgb: np.ndarray, views, faces: list[Face], names, min_face: int, scale: float) -> list[Face]:
    """Confirmed faces the next cascade finds away from ``faces``: a second face the first cascade missed (each
    cascade misses some faces the other finds)."""
    more = []
    for name in names:
        for view in views:
            for f in _distinct(_run_cascade(name, view, min_face, scale)):
                apart = not any(abs(f.cx - k.cx) < k.size / 2 and abs(f.cy - k.cy) < k.size / 2 for k in faces + more)
                if apart and is_confirmed(rgb, f):
                    more.append(f)
    return more


def is_confirmed(rgb: np.ndarray, face: Face) -> bool:
    """Two eyes in the face's upper part and a face found around it by the "alt2" cascade: what a real frontal face
    shows and a texture that fooled one cascade seldom does."""
    import cv2

    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    h, w = gray.shape

    def cut(margin: float) -> np.ndarray:
        pad = margin * face.size
        x0, y0 = max(0, int(face.x - pad)), max(0, int(face.y - pad))
        x1, y1 = min(w, int(face.x + face.size + pad)), min(h, int(face.y + face.size + pad))
        return gray[y0:y1, x0:x1]

    inner = cut(0.0)
    if min(inner.shape) < 8:
        return False
    upper = cv2.equalizeHist(cv2.resize(inner, (CONFIRM_SIDE, CONFIRM_SIDE))[: CONFIRM_SIDE * 3 // 5])
    eyes = max(len(_cascade(name).detectMultiScale(upper, scaleFactor=1.1, minNeighbors=3, minSize=(16, 16)))
               for name in EYE_CASCADES)
    if eyes < 2:
        return False
    around = cv2.equalizeHist(cv2.resize(cut(0.25), (200, 200)))
    return len(_cascade(CASCADES[1]).detectMultiScale(around, scaleFactor=1.1, minNeighbors=3)) > 0


def _confirmed(rgb: np.ndarray, faces: list[Face]) -> list[Face]:
    """The candidates less those that are not confirmed and small beside a confirmed one (largest first)."""
    confirmed = [is_confirmed(rgb, f) for f in faces]
    largest = max((f.size for f, ok in zip(faces, confirmed) if ok), default=0.0)
    return [f for f, ok in zip(faces, confirmed) if ok or f.size >= MIN_UNCONFIRMED_SHARE * largest]


def _run_cascade(name: str, gray: np.ndarray, min_face: int, scale: float) -> list[Face]:
    found: list[Face] = []
    for mirrored in ((False, True) if "profile" in name else (False,)):  # the profile cascade sees one side
        view = np.ascontiguousarray(gray[:, ::-1]) if mirrored else gray
        boxes = _cascade(name).detectMultiScale(view, scaleFactor=1.1, minNeighbors=4, minSize=(min_face, min_face))
        for x, y, s, _ in np.asarray(boxes).reshape(-1, 4):
            x = view.shape[1] - x - s if mirrored else x
            found.append(Face(float(x) / scale, float(y) / scale, float(s) / scale))
    return found


def _distinct(faces: list[Face]) -> list[Face]:
    """Largest first, dropping boxes centred inside a larger kept one (the same face seen twice)."""
    kept: list[Face] = []
    for f in sorted(faces, key=lambda f: -f.size):
        if not any(abs(f.cx - k.cx) < k.size / 2 and abs(f.cy - k.cy) < k.size / 2 for k in kept):
            kept.append(f)
    return kept
