"""Cropping a portrait the way AniTalker's training faces were framed, and pasting the animation back.

The model only ever saw 256x256 squares in which the head fills most of the frame. ``crop_portrait`` makes
such a square from any picture:

- ``auto``: a square around a detected face (the largest, or the ``face``-th from the left), its side
  ``face side * (1 + margin)``, its centre a little above the face box's centre (the cascades' boxes sit low
  on the head). The defaults are calibrated on the demo portraits the authors ship, which are already framed
  the way the model likes: auto-cropping them gives back nearly the whole picture (intersection-over-union
  0.80-0.83 with the full image for all five; see tests/test_portrait_crop.py).
- ``full``: the whole picture, resized exactly like the official demo (PIL ``resize((256, 256))``, which
  squeezes a non-square picture rather than cropping it).
- ``manual``: a square ``(x, y, size)`` given in source pixels.

Parts of a box that lie outside the picture are filled by repeating the edge pixels. Every mode resizes with
PIL's bicubic filter (antialiased when shrinking), the filter of the official preprocessing.

``paste_back`` (its own module) puts rendered frames back into the full-resolution original.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from PIL import Image

from ..errors import PortraitError
from ..types import IMAGE_SIZE, CropBox
from .face_detection import Face, detect_faces
from .pixels import to_uint8

CROP_MODES = ("auto", "full", "manual")
DEFAULT_MARGIN = 0.65
"""auto crop side = detected face side * (1 + margin); calibrated on the demo portraits."""
CENTER_SHIFT = 0.08
"""auto crop centre sits this many face sides above the detected face's centre."""
TRAINING_FACE = (0.5, 0.5 + CENTER_SHIFT / (1 + DEFAULT_MARGIN), 1 / (1 + DEFAULT_MARGIN))
"""Where the face sits in a crop framed like the training data (centre x, centre y, side; fractions of the crop)."""
MIN_CROP = 8
ROWS_PER_CHUNK = 512
"""Rows converted at a time, so an 8000x8000 input needs no full-size temporary copies."""


def single_image(image: torch.Tensor, name: str = "portrait") -> tuple[torch.Tensor, str]:
    """One picture where one is meant: of a ComfyUI IMAGE batch the first is used, and the note says so.

    This is the pack's one policy for batches given where a single image belongs."""
    if isinstance(image, torch.Tensor) and image.ndim == 4:
        if image.shape[0] == 0:
            raise PortraitError(f"the {name} is an empty batch of images; connect a node that loads a picture")
        count = int(image.shape[0])
        return image[0], (f"the {name} is a batch of {count} images; the first one is used" if count > 1 else "")
    return image, ""


def check_image(image: torch.Tensor, name: str = "portrait") -> torch.Tensor:
    """One (H,W,C) picture with 1-4 channels, or a clear error (batches go through ``single_image`` first)."""
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise PortraitError(f"the {name} must be one image shaped (height, width, channels); got {shape}")
    h, w, c = image.shape
    if h == 0 or w == 0:
        raise PortraitError(f"the {name} is empty ({w}x{h} pixels); load a real picture")
    if c not in (1, 2, 3, 4):
        raise PortraitError(f"the {name} has {c} channels; expected grayscale (1), RGB (3) or RGBA (4)")
    return image


def _rgb_rows(image: torch.Tensor, start: int, stop: int) -> tuple[torch.Tensor, bool]:
    """Rows [start, stop) as float32 RGB in [0,1] (alpha over white, gray repeated) and whether alpha was used."""
    rows = image[start:stop].float()
    if not torch.isfinite(rows).all():
        raise PortraitError("the portrait contains NaN or infinite pixel values; check the node that made it")
    rows = rows.clamp(0, 1)
    has_alpha = rows.shape[-1] in (2, 4)
    if has_alpha:
        alpha = rows[..., -1:]
        rows = rows[..., :-1] * alpha + (1 - alpha)
    if rows.shape[-1] == 1:
        rows = rows.expand(-1, -1, 3)
    return rows, has_alpha


def to_rgb_float(image: torch.Tensor) -> torch.Tensor:
    """(H,W,C) 0..1 -> (H,W,3) float32 CPU RGB (alpha over white, gray repeated), row-chunked for big images."""
    image = check_image(image)
    h, w = image.shape[:2]
    out = torch.empty((h, w, 3), dtype=torch.float32)
    for s in range(0, h, ROWS_PER_CHUNK):
        out[s: s + ROWS_PER_CHUNK] = _rgb_rows(image, s, s + ROWS_PER_CHUNK)[0].cpu()
    return out


def to_rgb_uint8(image: torch.Tensor) -> tuple[np.ndarray, str]:
    """(H,W,C) 0..1 -> (H,W,3) uint8 RGB and a note (alpha composited over white); row-chunked for big images."""
    image = check_image(image)
    h, w = image.shape[:2]
    out = np.empty((h, w, 3), dtype=np.uint8)
    used_alpha = False
    for s in range(0, h, ROWS_PER_CHUNK):
        rows, has_alpha = _rgb_rows(image, s, s + ROWS_PER_CHUNK)
        used_alpha |= has_alpha
        out[s: s + ROWS_PER_CHUNK] = to_uint8(rows)
    note = "the portrait's transparent areas were composited over white" if used_alpha else ""
    return out, note


def choose_face(faces: list[Face], face: int, width: int, height: int) -> Face:
    """``face`` 0: the largest (``faces`` come largest first); 1, 2, ...: counted from the left, so the numbers
    follow the picture rather than the faces' sizes, and stay put when two faces are about as large."""
    if isinstance(face, bool) or not isinstance(face, int) or face < 0:
        raise PortraitError(f"face {face!r} must be a whole number: 0 for the largest face, 1 for the leftmost, "
                            "2 for the second from the left, ...")
    if face == 0:
        return faces[0]
    if face > len(faces):
        found = f"{len(faces)} face" + ("s" if len(faces) > 1 else "")
        raise PortraitError(f"face {face} was asked for but only {found} found in the {width}x{height} picture; "
                            f"give face 1 to {len(faces)} (numbered from the left, as the preview shows) or 0 for "
                            "the largest")
    return left_to_right(faces)[face - 1]


def left_to_right(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: f.cx)


def _auto_box(rgb: np.ndarray, margin: float, face_index: int = 0) -> tuple[CropBox, str]:
    h, w = rgb.shape[:2]
    faces = detect_faces(rgb)
    if not faces:
        raise PortraitError(
            f"no face was found in the {w}x{h} portrait. If the picture is already a head-and-shoulders crop, "
            "set crop mode to 'full' (use the whole image); otherwise set crop mode to 'manual' and give the "
            "square around the head as box x, y, size in pixels")
    face = choose_face(faces, face_index, w, h)
    side = max(MIN_CROP, round(face.size * (1 + margin)))
    cx, cy = face.cx, face.cy - CENTER_SHIFT * face.size
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    face_in_crop = ((face.cx - x0) / side, (face.cy - y0) / side, face.size / side)
    numbered = tuple((f.x, f.y, f.size) for f in left_to_right(faces))
    box = CropBox(x0, y0, side, w, h, mode="auto", face=face_in_crop, faces=numbered)
    note = ""
    if len(faces) > 1:
        number = left_to_right(faces).index(face) + 1
        note = (f"found {len(faces)} faces, using the largest (face {number} from the left)" if face_index == 0
                else f"found {len(faces)} faces, using face {number} from the left")
    return box, note


def _manual_box(box, w: int, h: int) -> CropBox:
    try:
        x, y, size = (int(v) for v in box)
    except (TypeError, ValueError):
        raise PortraitError(f"manual crop needs a box (x, y, size) of whole pixels, got {box!r}") from None
    if size < MIN_CROP:
        raise PortraitError(f"the manual crop size is {size}; give the side of the square in pixels "
                            f"(at least {MIN_CROP})")
    if x >= w or y >= h or x + size <= 0 or y + size <= 0:
        raise PortraitError(f"the manual crop box x={x}, y={y}, size={size} lies outside the {w}x{h} image; "
                            "x and y are the top-left corner in pixels of the original image")
    return CropBox(x, y, size, w, h, mode="manual")


def _cut(rgb: np.ndarray, box: CropBox) -> np.ndarray:
    """The square box; where it extends past the image the edge pixels are repeated."""
    h, w = rgb.shape[:2]
    x0, y0 = max(box.x0, 0), max(box.y0, 0)
    x1, y1 = min(box.x1, w), min(box.y1, h)
    region = rgb[y0:y1, x0:x1]
    pads = ((y0 - box.y0, box.y1 - y1), (x0 - box.x0, box.x1 - x1), (0, 0))
    if any(p for pair in pads for p in pair):
        region = np.pad(region, pads, mode="edge")
    return region


def _overhangs(box: CropBox, tolerance: float = 0.05) -> bool:
    """Whether the box sticks out of the picture by more than ``tolerance`` of its side (worth a note)."""
    overhang = max(-box.x0, -box.y0, box.x1 - box.image_width, box.y1 - box.image_height)
    return overhang > tolerance * box.size


def crop_portrait(image: torch.Tensor, mode: str = "auto", box: Optional[tuple[int, int, int]] = None,
                  margin: Optional[float] = None, face: int = 0) -> tuple[torch.Tensor, CropBox, str]:
    """(H,W,C) 0..1 with C in {1,3,4} (or a batch: its first, noted) -> ((1,3,256,256) in [-1,1], crop box in
    source pixels, note). ``face`` (auto only): 0 the largest face, 1 the leftmost, 2 the next, ..."""
    if mode not in CROP_MODES:
        raise PortraitError(f"crop mode {mode!r} is not one of: {', '.join(CROP_MODES)}")
    if margin is not None and not (math.isfinite(float(margin)) and 0 <= float(margin) <= 10):
        raise PortraitError(f"the crop margin {margin} must be between 0 and 10 ({DEFAULT_MARGIN:g} frames a head "
                            "like the official demo portraits)")
    if face and mode != "auto":
        raise PortraitError(f"face {face} picks one of the faces that crop mode 'auto' finds; set crop mode to auto, "
                            f"or face to 0 for crop mode {mode!r}")
    image, batch_note = single_image(image)
    rgb, note = to_rgb_uint8(image)
    h, w = rgb.shape[:2]
    notes = [batch_note, note]
    if mode == "full":
        crop_box = CropBox(0, 0, max(h, w), w, h, mode="full")
        region = rgb
        if h != w:
            notes.append(f"the {w}x{h} image was squeezed to a square, as the official code does")
    else:
        if mode == "manual":
            if box is None:
                raise PortraitError("crop mode 'manual' needs a box (x, y, size) in pixels of the original image")
            crop_box = _manual_box(box, w, h)
        else:
            crop_box, found = _auto_box(rgb, DEFAULT_MARGIN if margin is None else float(margin), face)
            notes.append(found)
        if _overhangs(crop_box):
            notes.append("the crop extends past the image border; that part repeats the edge pixels")
        region = _cut(rgb, crop_box)
    if min(h, w) < 64:
        notes.append(f"the portrait is only {w}x{h} pixels; expect a blurry result")
    return model_input(region), crop_box, "; ".join(n for n in notes if n)


def model_input(region: np.ndarray) -> torch.Tensor:
    """(h,w,3) uint8 RGB -> (1,3,256,256) in [-1,1], resized with PIL's bicubic filter as the official code does."""
    resized = Image.fromarray(np.ascontiguousarray(region)).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1).float().div(255)
    return ((x - 0.5) * 2).unsqueeze(0)


def crop_square(rgb: np.ndarray, box: CropBox) -> torch.Tensor:
    """The square ``box`` of an (H,W,3) uint8 RGB frame (edges repeated past the border) as the model's input."""
    return model_input(_cut(rgb, box))
