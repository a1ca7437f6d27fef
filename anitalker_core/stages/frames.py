"""Rendering a take into an IMAGE batch as a stage: its first batches timed, then the rest."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Iterator, Optional

import torch

from ..models.motion_autoencoder import MotionAutoencoder
from ..types import PortraitCode, PreviewCallback, ProgressCallback
from ..video.renderer import Batches, batch_plan, check_latents, collect_frames, iter_frames, model_device
from .estimate import LOWER_PRECISION, SMALLER_BATCH, STREAM, Need, Part, Step, image_bytes, measured_needs, \
    merge_needs
from .measure import measure

WARMUP_FRAMES = 6
"""The renderer is timed on its first batches, at least two, until this many frames. The first batch pays one-off
set-up (kernel choice, caches, fresh memory), so the batches after it are the ones that count."""


@dataclass
class RenderTiming:
    """The first batches of a render, timed: what they cost per frame and once, and the memory of one batch."""

    done: list[tuple[int, torch.Tensor]]
    seconds_per_frame: float
    setup_s: float
    batch: int
    host_bytes: int
    device_bytes: int

    def needs(self, batch: int, device: torch.device, precision: torch.dtype) -> dict[str, tuple[Need, ...]]:
        """Memory of rendering ``batch`` frames at once, scaled from the timed batches."""
        advice = SMALLER_BATCH
        if device.type == "cuda" and precision == torch.float32:
            advice += f", or {LOWER_PRECISION}"
        scale = batch / self.batch
        return measured_needs(device, f"rendering {batch} frames at once", self.host_bytes * scale,
                              self.device_bytes * scale, advice)


def time_batches(batches: Iterator[tuple[int, torch.Tensor]], total: int, device: torch.device) -> RenderTiming:
    """Render from ``batches`` until at least two batches and ``WARMUP_FRAMES`` frames (or all ``total``) are
    done, timing each; the frames are kept for the run to go on from."""
    first = measure(lambda: next(batches), device)
    done = [first.value]
    frames, timed = first.value[1].shape[0], []
    while frames < total and (frames < WARMUP_FRAMES or len(done) < 2):
        batch = measure(lambda: next(batches), device, memory=device.type == "cuda")
        done.append(batch.value)
        timed.append((batch.seconds, batch.value[1].shape[0]))
        frames += batch.value[1].shape[0]
    seconds, count = map(sum, zip(*timed)) if timed else (first.seconds, first.value[1].shape[0])
    per_frame = seconds / count
    setup = max(first.seconds - per_frame * first.value[1].shape[0], 0.0)  # paid once per process
    return RenderTiming(done, per_frame, setup, first.value[1].shape[0], first.host_bytes, first.device_bytes)


class FrameRender:
    """Motion latents (F,20) -> frames (F,256,256,3) float32 on the CPU in 0..1: the whole take as one IMAGE batch,
    so its memory grows with the length (Render Video streams instead)."""

    def __init__(self, renderer: MotionAutoencoder, portrait: PortraitCode, latents: torch.Tensor,
                 batch_size: Optional[int] = None) -> None:
        check_latents(renderer, latents)
        self.renderer, self.latents = renderer, latents
        self.device = model_device(renderer)
        self.batch = batch_plan(latents.shape[0], batch_size, self.device)
        self._batches = iter_frames(renderer, portrait, latents, self.batch)
        self._done: list[tuple[int, torch.Tensor]] = []

    def estimate(self) -> Step:
        """Renders the first batches (kept: the run goes on from them) and scales their time to the take."""
        timing = time_batches(self._batches, self.latents.shape[0], self.device)
        self._done = timing.done
        frames, side = self.latents.shape[0], self.renderer.size
        host = (Need(f"IMAGE output of {frames} frames at {side}x{side}", image_bytes(frames, side, side), STREAM),)
        if self.device.type == "cuda":  # two pinned staging buffers
            host += (Need("staging buffers", image_bytes(2 * self.batch, side, side), SMALLER_BATCH),)
        needs = merge_needs({"host": host}, timing.needs(self.batch, self.device, self.renderer.compute_dtype))
        seconds = timing.setup_s + timing.seconds_per_frame * frames  # this run paid the set-up in its first batch
        return Step((Part("rendering", seconds, f"{timing.seconds_per_frame:.2f} s/frame"),), **needs)

    def run(self, callback: Optional[ProgressCallback] = None,
            preview: Optional[PreviewCallback] = None) -> torch.Tensor:
        done, self._done = self._done, []
        batches: Batches = chain(done, self._batches)
        with torch.no_grad():
            return collect_frames(batches, self.latents.shape[0], self.renderer.size, self.batch, self.device,
                                  callback, preview)
