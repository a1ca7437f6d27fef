"""Which of the motion's numbers move the eyes and which the mouth, measured on a portrait by rendering.

AniTalker's 20 motion numbers weight learned directions; none is named "blink" or "jaw", and a direction can move
both. Nudging each number in turn from the portrait's own code and rendering shows where it acts: the share of the
change that lands in the eyes' band of the face (rather than the mouth's) is that number's eye share. A dub takes
the eyes' quick motion from the footage or the speech by these shares (``motion.dub``).
"""

from __future__ import annotations

import torch

from ..image.portrait_crop import TRAINING_FACE
from ..models.motion_autoencoder import MotionAutoencoder
from ..types import PortraitCode
from .renderer import iter_frames

EYES = (0.15, 0.5)
"""Rows of the face box (fractions of its side from its top) where the eyes and brows are."""
MOUTH = (0.6, 1.0)
"""Rows of the face box where the mouth and jaw are."""


def _rows(span: tuple[float, float], size: int) -> slice:
    cy, side = TRAINING_FACE[1], TRAINING_FACE[2]
    top = cy - side / 2
    return slice(round((top + span[0] * side) * size), round((top + span[1] * side) * size))


def eye_share(renderer: MotionAutoencoder, portrait: PortraitCode, steps: torch.Tensor) -> torch.Tensor:
    """(D,) in 0..1: for each motion number, the share of the change its nudge by ``steps`` (D,) makes in the eye
    band rather than the mouth band of the rendered face. D + 1 frames are rendered."""
    base = portrait.alpha0.detach().float().cpu().reshape(1, -1)
    dims = base.shape[1]
    nudged = base + torch.diag(steps.float().cpu().reshape(-1))
    frames = torch.cat([b for _, b in iter_frames(renderer, portrait, torch.cat([base, nudged]))]).float().cpu()
    change = (frames[1:] - frames[:1]).abs().mean(dim=1)  # (D,H,W)
    size = change.shape[-1]
    cx, side = TRAINING_FACE[0], TRAINING_FACE[2]
    columns = slice(round((cx - side / 2) * size), round((cx + side / 2) * size))
    eyes = change[:, _rows(EYES, size), columns].mean(dim=(1, 2))
    mouth = change[:, _rows(MOUTH, size), columns].mean(dim=(1, 2))
    share = eyes / (eyes + mouth).clamp(min=1e-12)
    return share.reshape(dims)
