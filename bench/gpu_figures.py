"""The figures of a GPU bench that are not one clip's: the renderer alone at a few batch sizes, low precision against
fp32 on the same frames, and the face model in each precision the pack may run it in.

Each one is measured after a pass that pays its one-off set-up (cuDNN's choice of kernels for the shape, the
allocator's growth), so the figures are what the path costs once it runs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from anitalker_core.device_policy import default_batch_size, render_precision
from anitalker_core.image.face_restore import FaceRestorer
from anitalker_core.image.upscale import load_upscale_model
from anitalker_core.models.motion_autoencoder import MotionAutoencoder
from anitalker_core.stages.video import stand_in_latents
from anitalker_core.types import PortraitCode
from anitalker_core.video.renderer import render_frames

GB = 1e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(call: Callable[[], object], device: torch.device) -> tuple[object, float]:
    sync(device)
    start = time.perf_counter()
    out = call()
    sync(device)
    return out, time.perf_counter() - start


def peak_gb(call: Callable[[], object], device: torch.device) -> Optional[float]:
    """GB the call allocated on the GPU at its peak, beyond what was allocated before it; None off CUDA."""
    if device.type != "cuda":
        return None
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    call()
    return round((torch.cuda.max_memory_allocated(device) - before) / GB, 3)


def render_speed(renderer: MotionAutoencoder, portrait: PortraitCode, frames: int,
                 batches: Sequence[int]) -> dict:
    """Frames per second of the renderer alone (``render_frames``: latents in, frames on the host out) in the best
    precision the pack picks for the device, at the batch the pack picks and at ``batches``, with each batch's peak
    GPU memory."""
    device = next(renderer.parameters()).device
    precision = render_precision("auto", device)
    chosen = default_batch_size(device)
    latents = stand_in_latents(portrait, frames)
    previous, renderer.compute_dtype = renderer.compute_dtype, precision.dtype
    by_batch = {}
    try:
        for batch in sorted({*batches, chosen}):
            if device.type == "cuda":  # cuDNN's choice of kernels for the shape
                render_frames(renderer, portrait, latents[: 2 * batch], batch_size=batch)
            _, seconds = timed(lambda: render_frames(renderer, portrait, latents, batch_size=batch), device)
            memory = peak_gb(lambda: render_frames(renderer, portrait, latents[:batch], batch_size=batch), device)
            by_batch[str(batch)] = {"fps": round(frames / seconds, 2), "peak_gpu_gb": memory,
                                    "gpu_gb_per_frame": round(memory / batch, 4) if memory is not None else None}
    finally:
        renderer.compute_dtype = previous
    return {"precision": precision.name, "batch": chosen, "frames": frames, "fps": by_batch[str(chosen)]["fps"],
            "by_batch": by_batch}


def low_precision_error(renderer: MotionAutoencoder, portrait: PortraitCode, frames: int) -> dict:
    """Mean and largest absolute difference (0..1) between frames rendered in fp32 and in the low precision the
    pack uses on the device: fp16 on CUDA, bf16 elsewhere (a CPU has no fast fp16)."""
    device = next(renderer.parameters()).device
    low = torch.float16 if device.type == "cuda" else torch.bfloat16
    latents = stand_in_latents(portrait, frames, seed=1)
    previous = renderer.compute_dtype
    try:
        renderer.compute_dtype = torch.float32
        reference = render_frames(renderer, portrait, latents)
        renderer.compute_dtype = low
        other = render_frames(renderer, portrait, latents)
    finally:
        renderer.compute_dtype = previous
    error = (other - reference).abs()
    mean = float(error.mean())
    return {"precision": "fp16" if low == torch.float16 else "bf16", "frames": frames, "mean_abs": round(mean, 6),
            "mean_abs_255": round(mean * 255, 3), "max_abs": round(float(error.max()), 4)}


def restore_speed(face_file: Path, device: torch.device, faces: int, batches: Sequence[int] = ()) -> dict:
    """Faces per second of the face model as the pack runs it on ``device`` (its own choice of precision, at its batch
    and at ``batches`` faces per call, each with its peak GPU memory) and in plain fp32, and the mean absolute
    difference between their faces, in levels of 255."""
    crops = torch.rand(faces, 3, 256, 256, generator=torch.Generator().manual_seed(0)).to(device)
    out, runs = {}, {}
    for label, dtype in (("pack", None), ("fp32", torch.float32)):
        restorer = load_upscale_model(face_file, device=device, dtype=dtype)
        if label == "fp32" and restorer.name == out["pack"]["model"]:  # the pack runs it in fp32 here
            out[label], runs[label] = out["pack"], runs["pack"]
            break
        sizes = sorted({restorer.batch, *batches}) if label == "pack" else [restorer.batch]
        by_batch = {}
        for batch in sizes:
            sized = FaceRestorer(restorer.network, restorer.side, batch=batch, name=restorer.name)
            with torch.inference_mode():
                if device.type == "cuda":  # cuDNN's choice of kernels for the shape
                    sized(crops[:batch])
                memory = peak_gb(lambda: sized(crops[:batch]), device)
                restored, seconds = timed(lambda: sized(crops), device)
            by_batch[str(batch)] = {"faces_per_s": round(faces / seconds, 2), "peak_gpu_gb": memory}
            if batch == restorer.batch:
                runs[label] = restored
        out[label] = {"model": restorer.name, "batch": restorer.batch, **by_batch[str(restorer.batch)],
                      "by_batch": by_batch}
        del restorer
    out["pack_vs_fp32_mean_abs_255"] = round(float((runs["pack"] - runs["fp32"]).abs().mean()) * 255, 3)
    return out
