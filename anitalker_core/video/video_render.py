"""A motion rendered straight into a video, batch by batch, in memory that does not grow with its length.

The motion of a whole clip is a few hundred kilobytes (20 numbers a frame), so nothing larger needs to exist
for more than one batch: each batch is rendered, optionally upscaled, pasted back into the full-size picture,
handed to the writers as uint8 and dropped. Peak memory is one batch at the output size, whether the clip
lasts ten seconds or ten minutes and whether the picture is 512 px or 4K.

``VideoRender`` describes such a clip; the headless command and ComfyUI's VIDEO output both write through it,
so they produce the same frames as Render Frames -> (upscale) -> Paste Back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch

from ..errors import MotionError, PortraitError
from ..image.paste_back import MASKS, Compositor, to_uint8
from ..image.upscale import Upscaler
from ..models.motion_autoencoder import MotionAutoencoder
from ..types import FPS, PortraitCode, PreviewCallback, ProgressCallback
from .renderer import check_latents, iter_frames, model_device
from .writers import BackgroundWriter, audio_for_mux

PIXELS_PER_PIECE = 32 * 2**20
"""Output pixels handed to the writers at a time (about 100 MB of uint8 RGB): a GPU renders 64 frames per
batch, which pasted into a 4K picture would be 1.6 GB at once."""


@dataclass(frozen=True)
class VideoRender:
    """One take of a motion, to be rendered on demand.

    original: the full picture the portrait was cropped from; when given, every frame is pasted back into it
    (``feather``, ``mask``, ``color_match`` as in ``paste_back``). upscaler: applied to each batch of 256x256
    frames first (before paste back).
    """

    renderer: MotionAutoencoder
    portrait: PortraitCode
    latents: torch.Tensor
    fps: float = FPS
    original: Optional[torch.Tensor] = None
    feather: float = 0.1
    mask: str = "head"
    color_match: bool = True
    upscaler: Optional[Upscaler] = None
    batch_size: Optional[int] = None

    def check(self) -> "VideoRender":
        """Refuse what would fail later, before any frame is rendered."""
        check_latents(self.renderer, self.latents)
        if not (isinstance(self.fps, (int, float)) and self.fps > 0):
            raise MotionError(f"the frame rate must be positive, got {self.fps!r}")
        if self.original is not None:
            self._compositor(torch.device("cpu"))  # validates picture, crop box, feather and mask
        elif self.mask not in MASKS:
            raise PortraitError(f"mask {self.mask!r} is not one of: {', '.join(MASKS)}")
        return self

    @property
    def num_frames(self) -> int:
        return int(self.latents.shape[0])

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames, known without rendering any."""
        if self.original is not None:
            h, w = self.original.shape[-3:-1]
            return int(w), int(h)
        side = self.renderer.size * (self.upscaler.scale if self.upscaler is not None else 1)
        return side, side

    @property
    def piece_frames(self) -> int:
        """Frames per uint8 piece handed to the writers: at most ``PIXELS_PER_PIECE`` output pixels."""
        width, height = self.size
        return max(1, PIXELS_PER_PIECE // (width * height))

    def _compositor(self, device: torch.device) -> Compositor:
        if self.portrait.crop is None:
            raise PortraitError("paste back needs the portrait's crop box; load the portrait with Load Portrait "
                                "(or the headless command) from the same picture")
        return Compositor(self.original, self.portrait.crop, feather=self.feather, mask=self.mask,
                          color_match=self.color_match, device=device)

    def finisher(self, device: torch.device) -> Callable[[torch.Tensor], Iterator[np.ndarray]]:
        """What happens to each rendered batch (n,3,256,256) 0..1 on ``device``: upscaled, pasted back and turned
        into uint8 pieces of at most ``PIXELS_PER_PIECE`` output pixels. Prepared once per clip (the paste's
        mask and colour match)."""
        compositor = self._compositor(device) if self.original is not None else None
        piece = self.piece_frames

        def finish(batch: torch.Tensor) -> Iterator[np.ndarray]:
            if self.upscaler is not None:
                batch = self.upscaler(batch)
            for s in range(0, batch.shape[0], piece):
                part = batch[s: s + piece]
                yield compositor.paste_uint8(part) if compositor else to_uint8(part.permute(0, 2, 3, 1))

        return finish

    def frames(self, callback: Optional[ProgressCallback] = None,
               preview: Optional[PreviewCallback] = None) -> Iterator[np.ndarray]:
        """The clip as uint8 batches (n,H,W,3), rendered as they are asked for."""
        finish = self.finisher(model_device(self.renderer))
        total = self.num_frames
        for start, batch in iter_frames(self.renderer, self.portrait, self.latents, self.batch_size):
            out = None
            for out in finish(batch):
                yield out
            if preview is not None:
                preview(torch.from_numpy(out[-1]).float().div_(255))
            if callback is not None:
                callback(start + batch.shape[0], total)

    def write(self, writers: Sequence, audio: Optional[tuple[torch.Tensor, int]] = None,
              callback: Optional[ProgressCallback] = None, preview: Optional[PreviewCallback] = None) -> int:
        """Render into every writer (``Mp4Writer``, ``FrameSequenceWriter``), encoding on background threads
        while the next batch renders; mux ``audio`` (waveform [C,T] or [B,C,T], rate). Closes the writers on
        success and aborts them (no partial file under the final name) on failure or cancel."""
        mux = audio_for_mux(*audio) if audio is not None else None
        threads: list[BackgroundWriter] = []
        try:
            for w in writers:
                if mux is not None:
                    w.add_audio_stream(mux[1], int(mux[0].shape[0]))
                threads.append(BackgroundWriter(w))
            for frames in self.frames(callback=callback, preview=preview):
                for t in threads:
                    t.write(frames)
            for t in threads:
                t.finish()
            for w in writers:
                if mux is not None:
                    w.write_audio(*mux)
                w.close()
        except BaseException:
            for t in threads:
                try:
                    t.finish()
                except BaseException:  # the first error is the one to report
                    pass
            for w in writers:
                w.abort()
            raise
        return self.num_frames
