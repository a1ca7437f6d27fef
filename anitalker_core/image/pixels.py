"""Pixel formats: ComfyUI's float 0..1 frames and the samples files take (8-bit, 16-bit or float).

A frame keeps the renderer's float precision until it is quantised once, into the sample type of the file it goes
to; an 8-bit picture's own pixels (v / 255) become v * 257 in 16 bits, exactly as loaded.
"""

from __future__ import annotations

import numpy as np
import torch

SAMPLE_TYPES = ("uint8", "uint16", "float32")
"""What output samples can be, in rising precision."""
FULL_SCALE = {"uint8": 255, "uint16": 65535}


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Float 0..1 on any device -> uint8 numpy on the host, rounded to nearest (values outside 0..1 clip)."""
    return frames.detach().clamp(0, 1).mul(255).round_().to(torch.uint8).cpu().numpy()


def to_samples(frames: torch.Tensor, sample_type: str) -> np.ndarray:
    """Float 0..1 on any device -> numpy samples on the host: integers rounded to nearest, floats clamped."""
    if sample_type == "uint8":
        return to_uint8(frames)
    clamped = frames.detach().float().clamp(0, 1)
    if sample_type == "float32":
        return clamped.cpu().numpy()
    # int32 first: torch has no uint16 arithmetic on every device
    return clamped.mul(65535).round_().to(torch.int32).cpu().numpy().astype(np.uint16)


def sample_type_of(samples: np.ndarray) -> str:
    name = samples.dtype.name
    if name not in SAMPLE_TYPES:
        raise TypeError(f"pixel samples must be one of {', '.join(SAMPLE_TYPES)}, got {name}")
    return name


def convert_samples(samples: np.ndarray, sample_type: str) -> np.ndarray:
    """Samples of one type as another (the same array when it already is): what a writer of 8-bit files does with
    16-bit or float frames, and the reverse."""
    source = sample_type_of(samples)
    if source == sample_type:
        return samples
    if source == "float32":
        return to_samples(torch.from_numpy(samples), sample_type)
    as_float = samples.astype(np.float32) / FULL_SCALE[source]
    if sample_type == "float32":
        return as_float
    if source == "uint8" and sample_type == "uint16":
        return samples.astype(np.uint16) * 257  # exact: v / 255 == 257 v / 65535
    return to_samples(torch.from_numpy(as_float), sample_type)


def widest(sample_types) -> str:
    """The most precise of these sample types (uint8 when there are none)."""
    return max(sample_types, key=SAMPLE_TYPES.index, default="uint8")
