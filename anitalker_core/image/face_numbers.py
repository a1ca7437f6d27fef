"""The faces found in a picture, outlined and numbered as a face index counts them, so an artist picking one of
several faces sees which number is whose."""

from __future__ import annotations

import numpy as np
import torch

from ..types import CropBox
from .portrait_crop import single_image, to_rgb_uint8

CHOSEN = (255, 210, 0)
OTHERS = (0, 200, 255)


def numbered_faces(image: torch.Tensor, box: CropBox, side: int = 256) -> torch.Tensor:
    """(1,side,side,3) 0..1: the picture fitted into a square (letterboxed in grey), each face of ``box.faces``
    outlined with its number (1 = leftmost); the face the crop was made around in another colour."""
    import cv2

    image, _ = single_image(image)
    rgb, _ = to_rgb_uint8(image)
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    fw, fh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = np.full((side, side, 3), 96, dtype=np.uint8)
    ox, oy = (side - fw) // 2, (side - fh) // 2
    canvas[oy: oy + fh, ox: ox + fw] = cv2.resize(rgb, (fw, fh), interpolation=cv2.INTER_AREA)
    chosen = None
    if box.face is not None:  # the chosen face's centre, in source pixels
        chosen = (box.x0 + box.face[0] * box.size, box.y0 + box.face[1] * box.size)
    for number, (x, y, size) in enumerate(box.faces, start=1):
        is_chosen = chosen is not None and abs(x + size / 2 - chosen[0]) < 1 and abs(y + size / 2 - chosen[1]) < 1
        color = CHOSEN if is_chosen else OTHERS
        x0, y0 = round(ox + x * scale), round(oy + y * scale)
        x1, y1 = round(ox + (x + size) * scale), round(oy + (y + size) * scale)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), color, 2 if is_chosen else 1)
        text_scale = max(0.4, (x1 - x0) / 60)
        cv2.putText(canvas, str(number), (x0 + 3, y0 + round(22 * text_scale)), cv2.FONT_HERSHEY_SIMPLEX,
                    text_scale, color, 2, cv2.LINE_AA)
    return torch.from_numpy(canvas).float().div_(255)[None]
