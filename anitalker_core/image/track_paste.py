"""Rendered heads pasted into footage along a tracked box: each frame into its own footage frame, at the square
the face was followed to there, through the soft head mask, with colours matched once per clip.

Where the face is not in a frame (``present`` false), the footage frame is handed on as it is; outside the mask
every pixel is the footage's, bit for bit. Only the box is converted to floats, so a 4K frame costs its head.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from .paste_back import ColorMatch, PasteOptions, crop_matte
from .pixels import to_samples


def _as_samples(frames: np.ndarray, sample_type: str) -> np.ndarray:
    """uint8 footage frames as ``sample_type`` samples (16-bit: exactly 257 v, as a picture's pixels are)."""
    if sample_type == "uint8":
        return frames.copy()
    if sample_type == "uint16":
        return frames.astype(np.uint16) * 257
    return frames.astype(np.float32) / 255


class TrackPaste:
    """Pastes heads into footage frames at a box per frame; ``match_colors`` first when matching colours."""

    def __init__(self, options: PasteOptions = PasteOptions(), device: Optional[torch.device] = None) -> None:
        self.options = options.check()
        self.device = torch.device(device or "cpu")
        self.color: Optional[ColorMatch] = None if options.color_match else ColorMatch()
        self._masks: dict[int, torch.Tensor] = {}

    def mask(self, side: int) -> torch.Tensor:
        """(side,side) 0..1: the head mask of a crop framed like the training faces, at that side."""
        if side not in self._masks:
            if len(self._masks) > 64:
                self._masks.clear()
            self._masks[side] = crop_matte(side, None, self.options).to(self.device)
        return self._masks[side]

    @staticmethod
    def _clip(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int, int, int, int]:
        x0, y0, side = (int(v) for v in box)
        xa, ya = max(x0, 0), max(y0, 0)
        xb, yb = min(x0 + side, width), min(y0 + side, height)
        return x0, y0, side, xa, ya, xb, yb

    def _fitted(self, head: torch.Tensor, side: int) -> torch.Tensor:
        """(3,h,w) 0..1 -> (3,side,side) 0..1 on the device."""
        f = head[None].to(self.device, torch.float32)
        if f.shape[-1] != side:
            f = F.interpolate(f, size=(side, side), mode="bicubic", align_corners=False,
                              antialias=side < f.shape[-1]).clamp_(0, 1)
        return f[0]

    def match_colors(self, head: torch.Tensor, frame: np.ndarray, box: np.ndarray) -> "TrackPaste":
        """The colour gain, from one rendered head (3,h,w) 0..1 and the footage frame (H,W,3) uint8 at its box."""
        if self.color is None:
            height, width = frame.shape[:2]
            x0, y0, side, xa, ya, xb, yb = self._clip(box, width, height)
            mask = self.mask(side)[ya - y0: yb - y0, xa - x0: xb - x0]
            fitted = self._fitted(head, side)[:, ya - y0: yb - y0, xa - x0: xb - x0]
            original = torch.from_numpy(frame[ya:yb, xa:xb]).permute(2, 0, 1).float().div(255).to(self.device)
            self.color = ColorMatch.estimate(fitted, original, 4 * mask * (1 - mask))
        return self

    def paste(self, frames: np.ndarray, heads: torch.Tensor, boxes: np.ndarray, present: np.ndarray,
              sample_type: str = "uint8", matte: bool = False, head_only: bool = False) -> np.ndarray:
        """frames (n,H,W,3) uint8 footage, heads (n,3,h,w) 0..1 -> (n,H,W,3|4) samples of ``sample_type``: each
        head pasted at its box where ``present`` (a fourth channel holds the mask each frame is pasted through when
        ``matte``; ``head_only``: the colour-matched head alone, black outside its box)."""
        if self.color is None:
            raise RuntimeError("colour matching needs a reference: call match_colors before pasting")
        n, height, width = frames.shape[:3]
        out = np.zeros_like(_as_samples(frames[:1], sample_type), shape=(n, height, width, 4 if matte else 3))
        if not head_only:
            out[..., :3] = _as_samples(frames, sample_type)
        for i in range(n):
            if not present[i]:
                continue
            x0, y0, side, xa, ya, xb, yb = self._clip(boxes[i], width, height)
            if xb <= xa or yb <= ya:
                continue
            m = self.mask(side)[ya - y0: yb - y0, xa - x0: xb - x0]
            head = self.color.apply(self._fitted(heads[i], side)[None])[0][:, ya - y0: yb - y0, xa - x0: xb - x0]
            if head_only:
                region = head
            else:
                below = torch.from_numpy(frames[i, ya:yb, xa:xb]).permute(2, 0, 1).float().div(255).to(self.device)
                region = torch.lerp(below, head, m[None])
            out[i, ya:yb, xa:xb, :3] = to_samples(region.permute(1, 2, 0), sample_type)
            if matte:
                out[i, ya:yb, xa:xb, 3] = to_samples(m[..., None], sample_type)[..., 0]
        return out

    def matte(self, box: np.ndarray, width: int, height: int) -> torch.Tensor:
        """(H,W) 0..1: the mask a frame with the head at ``box`` is pasted through."""
        full = torch.zeros(height, width)
        x0, y0, side, xa, ya, xb, yb = self._clip(box, width, height)
        if xb > xa and yb > ya:
            full[ya:yb, xa:xb] = self.mask(side)[ya - y0: yb - y0, xa - x0: xb - x0].cpu()
        return full

