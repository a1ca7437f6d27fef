"""Pixel formats: ComfyUI's float 0..1 frames and the 8-bit frames encoders and image files take."""

from __future__ import annotations

import numpy as np
import torch


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Float 0..1 on any device -> uint8 numpy on the host, rounded to nearest (values outside 0..1 clip)."""
    return frames.detach().clamp(0, 1).mul(255).round_().to(torch.uint8).cpu().numpy()
