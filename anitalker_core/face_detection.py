"""Offline face detection with the Haar cascades that ship inside the OpenCV wheel.

Why this detector: it needs no download at run time and no compiler, and it found the face in every sample
portrait (photo, generated faces, painting, statue, cartoon, RGBA). The alternatives we measured are worse
fits for a ComfyUI environment: mediapipe 0.10.14 (the last wheel with the legacy face detector and its
models inside) pulls in jax, jaxlib, matplotlib, opencv-contrib-python and pins protobuf < 5; mediapipe 1.x
ships no models; OpenCV's YuNet DNN detector needs an ONNX file the wheel does not carry; dlib compiles from
source. Two frontal cascades and a profile cascade (both directions) are tried in turn, on a copy scaled to
at most 1024 px, so huge images cost milliseconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

CASCADES = ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml",
            "haarcascade_profileface.xml")
DETECT_SIDE = 1024
MIN_SIDE = 192


@dataclass(frozen=True)
class Face:
    x: float
    y: float
    size: float  # the cascades return squares

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
        raise RuntimeError(f"OpenCV's bundled cascade {path} could not be loaded; reinstall opencv-python-headless<5")
    return cascade


def detect_faces(rgb: np.ndarray) -> list[Face]:
    """All faces found by the first cascade that finds any, largest first, in source-pixel coordinates."""
    import cv2

    h, w = rgb.shape[:2]
    scale = 1.0
    longest = max(h, w)
    if longest > DETECT_SIDE:
        scale = DETECT_SIDE / longest
    elif longest < MIN_SIDE:
        scale = MIN_SIDE / longest
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale != 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    gray = cv2.equalizeHist(gray)
    min_face = max(20, min(gray.shape) // 10)
    for name in CASCADES:
        found = []
        for flipped in ((False, True) if "profile" in name else (False,)):
            img = gray[:, ::-1].copy() if flipped else gray
            boxes = _cascade(name).detectMultiScale(img, scaleFactor=1.1, minNeighbors=4, minSize=(min_face, min_face))
            for (x, y, s, _) in np.asarray(boxes).reshape(-1, 4):
                x = img.shape[1] - x - s if flipped else x
                found.append(Face(x / scale, y / scale, s / scale))
        if found:
            return sorted(found, key=lambda f: -f.size)
    return []
