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


def detect_faces(rgb: np.ndarray) -> list[Face]:
    """Faces in an (H,W,3) uint8 RGB image, largest first, in source pixels; [] when none is found.

    The cascades are tried in order (each on the equalised, then the plain grayscale image) and the first
    that finds anything wins, so one image never mixes boxes of different cascades (their scales differ).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise TypeError(f"detect_faces expects an (H,W,3) uint8 array, got {rgb.shape} {rgb.dtype}")
    import cv2

    gray, scale = _detector_view(rgb)
    min_face = max(20, min(gray.shape) // 10)
    # Histogram equalisation helps on dim or low-contrast portraits (and the margin is calibrated with it),
    # but a face small in a large flat background loses its contrast to it, so the plain image is the fallback.
    views = (cv2.equalizeHist(gray), gray)
    for name in CASCADES:
        for view in views:
            found = _run_cascade(name, view, min_face, scale)
            if found:
                faces = _distinct(found)
                log.debug("%s found %d face(s)", name, len(faces))
                return faces
    return []


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
