"""Cropping a portrait the way AniTalker's training faces were cropped, and pasting animation back.

The model sees a 256x256 square around the head. The default margin and vertical offset are calibrated on
the released demo portraits (already cropped the way the model likes), so auto-cropping them gives back
nearly the whole image.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import PortraitError
from .face_detection import detect_faces
from .types import IMAGE_SIZE, CropBox

CROP_MODES = ("auto", "full", "manual")
DEFAULT_MARGIN = 0.55  # crop side = face side * (1 + margin)
CENTER_SHIFT = 0.09  # crop centre sits this many face sides above the detected face centre


def to_rgb(image: torch.Tensor) -> tuple[torch.Tensor, str]:
    """(H,W,C) 0..1 with C in 1..4 -> (H,W,3); alpha is composited over white."""
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise PortraitError(f"expected one image shaped (height, width, channels), got {shape}")
    h, w, c = image.shape
    if h == 0 or w == 0:
        raise PortraitError("the portrait is empty (0 pixels)")
    if c not in (1, 2, 3, 4):
        raise PortraitError(f"the portrait has {c} channels; expected grayscale, RGB or RGBA")
    image = image.float()
    if not torch.isfinite(image).all():
        raise PortraitError("the portrait contains NaN or infinite pixel values")
    image = image.clamp(0, 1)
    note = ""
    if c in (2, 4):
        alpha = image[..., -1:]
        image = image[..., :-1] * alpha + (1 - alpha)
        note = "the portrait's transparent areas were filled with white"
    if image.shape[-1] == 1:
        image = image.expand(-1, -1, 3)
    return image, note


def auto_box(rgb_u8: np.ndarray, margin: float) -> tuple[CropBox, str]:
    h, w = rgb_u8.shape[:2]
    faces = detect_faces(rgb_u8)
    if not faces:
        raise PortraitError(
            "no face was found in the portrait. If the image is already a head-and-shoulders crop, set crop mode "
            "to 'full' (use the whole image); otherwise choose 'manual' and give the face box (x, y, size)")
    face = faces[0]
    side = max(8, round(face.size * (1 + margin)))
    cx, cy = face.cx, face.cy - CENTER_SHIFT * face.size
    box = CropBox(round(cx - side / 2), round(cy - side / 2), side, w, h)
    note = f"found {len(faces)} faces, using the largest" if len(faces) > 1 else ""
    return box, note


def cut(rgb_u8: np.ndarray, box: CropBox) -> np.ndarray:
    """The square box, with edge pixels repeated where it extends past the image."""
    h, w = rgb_u8.shape[:2]
    x0, y0 = max(box.x0, 0), max(box.y0, 0)
    x1, y1 = min(box.x1, w), min(box.y1, h)
    region = rgb_u8[y0:y1, x0:x1]
    pads = ((y0 - box.y0, box.y1 - y1), (x0 - box.x0, box.x1 - x1), (0, 0))
    if any(p for pair in pads for p in pair):
        region = np.pad(region, pads, mode="edge")
    return region


def crop_portrait(image: torch.Tensor, mode: str = "auto", box: Optional[tuple[int, int, int]] = None,
                  margin: Optional[float] = None) -> tuple[torch.Tensor, CropBox, str]:
    """(H,W,C) 0..1 -> ((1,3,256,256) in [-1,1], crop box in source pixels, note)."""
    if mode not in CROP_MODES:
        raise PortraitError(f"crop mode {mode!r} is not one of {', '.join(CROP_MODES)}")
    rgb, note = to_rgb(image)
    h, w = rgb.shape[:2]
    rgb_u8 = (rgb * 255).round().to(torch.uint8).numpy()
    notes = [note]
    if mode == "full":
        crop_box = CropBox(0, 0, max(h, w), w, h)
        region = rgb_u8
        if h != w:
            notes.append(f"the {w}x{h} image is squeezed to a square, as the official code does")
    elif mode == "manual":
        if box is None or len(box) != 3:
            raise PortraitError("manual crop needs a box (x, y, size) in pixels of the original image")
        x, y, size = (int(v) for v in box)
        if size < 8:
            raise PortraitError(f"the manual crop size {size} is too small; give the side of the square in pixels")
        if x >= w or y >= h or x + size <= 0 or y + size <= 0:
            raise PortraitError(f"the manual crop box ({x}, {y}, {size}) lies outside the {w}x{h} image")
        crop_box = CropBox(x, y, size, w, h)
        region = cut(rgb_u8, crop_box)
    else:
        crop_box, found = auto_box(rgb_u8, DEFAULT_MARGIN if margin is None else float(margin))
        notes.append(found)
        region = cut(rgb_u8, crop_box)
    if min(h, w) < 64:
        notes.append(f"the portrait is only {w}x{h} pixels; expect a blurry result")
    # PIL's bicubic resize, as the official preprocessing, so pre-cropped portraits match it exactly
    pil = Image.fromarray(np.ascontiguousarray(region)).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).float().div(255)
    return ((x - 0.5) * 2).unsqueeze(0), crop_box, "; ".join(n for n in notes if n)


def feather_mask(size: int, feather: float) -> torch.Tensor:
    """(size,size) mask: 1 inside, smooth fall-off to 0 over ``feather * size`` pixels at the border."""
    ramp = max(1.0, feather * size)
    pos = torch.arange(size, dtype=torch.float32) + 0.5
    edge = torch.minimum(pos, size - pos) / ramp
    edge = edge.clamp(0, 1)
    edge = edge * edge * (3 - 2 * edge)  # smoothstep
    return edge[:, None] * edge[None, :]


def paste_back(original: torch.Tensor, frames: torch.Tensor, box: CropBox, feather: float = 0.1,
               chunk: int = 8) -> torch.Tensor:
    """Composite rendered frames (T,256,256,3) into the original picture at full resolution -> (T,H,W,3)."""
    rgb, _ = to_rgb(original[0] if original.ndim == 4 else original)
    h, w = rgb.shape[:2]
    if (w, h) != (box.image_width, box.image_height):
        raise PortraitError(f"the original image is {w}x{h} but the portrait was cropped from a "
                            f"{box.image_width}x{box.image_height} image; connect the same image you loaded")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise PortraitError(f"expected rendered frames (T,H,W,3), got {tuple(frames.shape)}")
    if box.size == max(h, w) and (box.x0, box.y0) == (0, 0) and h != w:
        # 'full' crop of a non-square image: the frames are the whole picture squeezed; unsqueeze them
        target_h, target_w, x0, y0 = h, w, 0, 0
        mask = feather_mask(1, 0).new_ones(h, w)
    else:
        target_h = target_w = box.size
        x0, y0 = box.x0, box.y0
        mask = feather_mask(box.size, feather)
    out = rgb.unsqueeze(0).repeat(frames.shape[0], 1, 1, 1)
    ya, yb = max(y0, 0), min(y0 + target_h, h)
    xa, xb = max(x0, 0), min(x0 + target_w, w)
    if ya >= yb or xa >= xb:
        return out
    m = mask[ya - y0: yb - y0, xa - x0: xb - x0, None]
    for s in range(0, frames.shape[0], chunk):
        f = frames[s: s + chunk].permute(0, 3, 1, 2).float()
        f = F.interpolate(f, size=(target_h, target_w), mode="bicubic", align_corners=False,
                          antialias=target_h < f.shape[-2]).clamp_(0, 1)
        f = f.permute(0, 2, 3, 1)[:, ya - y0: yb - y0, xa - x0: xb - x0]
        region = out[s: s + chunk, ya:yb, xa:xb]
        region.copy_(region * (1 - m) + f * m)
    return out
