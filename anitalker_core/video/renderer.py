"""Rendering frames from motion latents, and reading motion latents out of a driving video.

The portrait is encoded once (``encode_portrait``); every frame after that costs only the decoder. Frames are
rendered in batches straight into a preallocated CPU tensor, so memory is one batch plus the output.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Optional

import torch

from ..device_policy import autocast, default_batch_size
from ..errors import MotionError
from ..models.motion_autoencoder import MotionAutoencoder
from ..types import CropBox, PortraitCode, PreviewCallback, ProgressCallback


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_portrait(model: MotionAutoencoder, image: torch.Tensor, crop: Optional[CropBox] = None,
                    note: str = "") -> PortraitCode:
    """image (1,3,256,256) in [-1,1] -> PortraitCode (kept on the model's device for rendering)."""
    device = model_device(model)
    wa, alpha, feats = model.encode(image.to(device=device, dtype=torch.float32))
    return PortraitCode(image=image.detach().cpu(), wa=wa, alpha0=alpha, feats=tuple(feats), crop=crop, note=note)


def _portrait_on(portrait: PortraitCode, device: torch.device,
                 channels_last: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    feats = [f.to(device) for f in portrait.feats]
    if device.type == "cuda" and channels_last:
        feats = [f.contiguous(memory_format=torch.channels_last) for f in feats]
    return portrait.wa.to(device), feats


def _cudnn_autotune(device: torch.device):
    """Same shapes batch after batch: let cuDNN pick its fastest kernels, for this render only (the global
    setting belongs to the host application)."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    c = torch.backends.cudnn
    return c.flags(enabled=c.enabled, benchmark=True, deterministic=c.deterministic, allow_tf32=c.allow_tf32)


class _HostSink:
    """Moves finished frames to the CPU output; on CUDA through two pinned buffers, so the copy of one batch
    overlaps the rendering of the next and the GPU never waits for the host."""

    def __init__(self, out: torch.Tensor, batch: int, device: torch.device) -> None:
        self.out, self.cuda = out, device.type == "cuda"
        if self.cuda:
            shape = (batch,) + tuple(out.shape[1:])
            self.staging = [torch.empty(shape, dtype=out.dtype, pin_memory=True) for _ in range(2)]
            self.pending: list = [None, None]
            self.turn = 0

    def _drain(self, k: int) -> None:
        if self.pending[k] is not None:
            event, start, n = self.pending[k]
            event.synchronize()
            self.out[start:start + n].copy_(self.staging[k][:n])
            self.pending[k] = None

    def put(self, start: int, frames: torch.Tensor) -> None:
        if not self.cuda:
            self.out[start:start + frames.shape[0]].copy_(frames)
            return
        k = self.turn
        self._drain(k)
        self.staging[k][: frames.shape[0]].copy_(frames, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self.pending[k] = (event, start, frames.shape[0])
        self.turn = 1 - k

    def flush(self) -> None:
        if self.cuda:
            for k in (self.turn, 1 - self.turn):
                self._drain(k)


def check_latents(model: MotionAutoencoder, latents: torch.Tensor) -> None:
    if latents.ndim != 2 or latents.shape[0] == 0:
        raise MotionError(f"expected motion latents of shape (frames, {model.motion_dim}) with at least one frame, "
                          f"got {tuple(latents.shape)}")
    if latents.shape[1] != model.motion_dim:
        raise MotionError(f"this motion has {latents.shape[1]} numbers per frame but the renderer expects "
                          f"{model.motion_dim}; render it with the stage-1 model it was made for")
    if not torch.isfinite(latents).all():
        raise MotionError("the motion contains NaN or infinite values; regenerate or reload it")


def batch_plan(total: int, batch_size: Optional[int], device: torch.device) -> int:
    """Evenly sized batches, so no lone last frame takes the slow single-frame path."""
    batch = int(batch_size) if batch_size else default_batch_size(device)
    if batch < 1:
        raise MotionError(f"batch size must be at least 1, got {batch}")
    return -(-total // -(-total // batch))


def iter_frames(model: MotionAutoencoder, portrait: PortraitCode, latents: torch.Tensor,
                batch_size: Optional[int] = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Render lazily, batch by batch: yields (first frame index, frames (n,3,256,256) in 0..1 on the model's
    device). Nothing is rendered before it is asked for, so a consumer that writes each batch away (an encoder,
    a paste back) holds one batch at a time whatever the clip's length."""
    check_latents(model, latents)
    device = model_device(model)
    total = latents.shape[0]
    batch = batch_plan(total, batch_size, device)
    wa, feats = _portrait_on(portrait, device, model.channels_last)
    latents = latents.to(device=device, dtype=torch.float32)
    for start in range(0, total, batch):
        # contexts per batch: a generator must not leave autocast switched on in its consumer's code
        with torch.no_grad(), autocast(device, model.compute_dtype), _cudnn_autotune(device):
            img = model.render(wa, latents[start:start + batch], feats)
        yield start, img.float().clamp_(-1, 1).add_(1).mul_(0.5)


Batches = Iterable[tuple[int, torch.Tensor]]
"""(first frame index, frames (n,3,256,256) in 0..1 on the model's device), as ``iter_frames`` yields them."""


def collect_frames(batches: Batches, total: int, size: int, batch: int, device: torch.device,
                   callback: Optional[ProgressCallback] = None,
                   preview: Optional[PreviewCallback] = None) -> torch.Tensor:
    """Rendered batches -> frames (total,size,size,3) float32 on the CPU, copied as they come (on CUDA through
    pinned buffers). ``preview`` gets the latest frame (size,size,3) after each batch, for a live view."""
    out = torch.empty((total, size, size, 3), dtype=torch.float32)
    sink = _HostSink(out, batch, device)
    for start, img in batches:
        sink.put(start, img.permute(0, 2, 3, 1))
        if preview is not None:
            preview(img[-1].permute(1, 2, 0).cpu())
        if callback is not None:
            callback(start + img.shape[0], total)
    sink.flush()
    return out


@torch.no_grad()
def render_frames(model: MotionAutoencoder, portrait: PortraitCode, latents: torch.Tensor,
                  batch_size: Optional[int] = None, callback: Optional[ProgressCallback] = None,
                  preview: Optional[PreviewCallback] = None) -> torch.Tensor:
    """latents (F,20) -> frames (F,256,256,3) float32 on the CPU in [0,1] (clamped like the reference)."""
    check_latents(model, latents)
    device = model_device(model)
    total = latents.shape[0]
    batch = batch_plan(total, batch_size, device)  # planned once: on a GPU it follows the memory available
    return collect_frames(iter_frames(model, portrait, latents, batch), total, model.size, batch, device, callback,
                          preview)


@torch.no_grad()
def extract_motion(model: MotionAutoencoder, frames: torch.Tensor, portrait: Optional[PortraitCode] = None,
                   relative: bool = True, batch_size: Optional[int] = None,
                   callback: Optional[ProgressCallback] = None) -> torch.Tensor:
    """Driving frames (T,3,256,256) in [-1,1] -> motion codes (T,20).

    relative: the portrait's own code plus each frame's change from the first driving frame, so the
    portrait keeps its pose and only the driving *motion* transfers; absolute: the driving codes as they are.
    """
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise MotionError(f"expected driving frames (T,3,256,256), got {tuple(frames.shape)}")
    device = model_device(model)
    batch = int(batch_size) if batch_size else default_batch_size(device)
    codes = []
    total = frames.shape[0]
    for start in range(0, total, batch):
        x = frames[start:start + batch].to(device=device, dtype=torch.float32)
        _, alpha, _ = model.encode(x)
        codes.append(alpha.float())
        if callback is not None:
            callback(min(start + batch, total), total)
    alphas = torch.cat(codes).cpu()
    if relative:
        if portrait is None:
            raise MotionError("relative motion needs the portrait; connect it or choose absolute motion")
        alphas = portrait.alpha0.float().cpu() + (alphas - alphas[:1])
    return alphas
