"""Comparing takes and edits: two frame sequences side by side in one batch of frames."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import AniTalkerError


def _rgb(frames: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[0] == 0 \
            or frames.shape[-1] not in (1, 3, 4):
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise AniTalkerError(f"the {name} frames must be a non-empty image batch (frames, height, width, 1/3/4 "
                             f"channels), got {shape}")
    return frames[..., :3].float() if frames.shape[-1] != 1 else frames.float().expand(-1, -1, -1, 3)


def side_by_side(left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, str]:
    """(N,H,W,C) frames in 0..1 -> (n, H, W + W', 3): left beside right, and a note on what was adjusted.

    The longer sequence is cut to the shorter one; a right side of another height is scaled to the left's
    height with its aspect kept (antialiased when shrinking)."""
    left, right = _rgb(left, "left"), _rgb(right, "right")
    notes = []
    n = min(left.shape[0], right.shape[0])
    if left.shape[0] != right.shape[0]:
        notes.append(f"the sides have {left.shape[0]} and {right.shape[0]} frames; the first {n} are shown")
    left, right = left[:n], right[:n]
    height = left.shape[1]
    if right.shape[1] != height:
        width = max(1, round(right.shape[2] * height / right.shape[1]))
        notes.append(f"the right side was scaled from {right.shape[2]}x{right.shape[1]} to {width}x{height}")
        x = right.permute(0, 3, 1, 2)
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False,
                          antialias=height < right.shape[1])
        right = x.clamp(0, 1).permute(0, 2, 3, 1)
    return torch.cat([left, right.to(left.device)], dim=2).contiguous(), "; ".join(notes)
