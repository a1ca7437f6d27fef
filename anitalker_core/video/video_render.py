"""A motion rendered straight into a video, batch by batch, in memory that does not grow with its length.

The motion of a whole clip is a few hundred kilobytes (20 numbers a frame), so nothing larger needs to exist
for more than one batch: each batch is rendered, optionally face-restored and upscaled, pasted back into the
full-size picture, handed on as uint8 and dropped. Peak memory is one batch at the output size, whether the clip
lasts ten seconds or ten minutes and whether the picture is 512 px or 4K.

``VideoRender`` describes such a clip: what its frames are made of and how each rendered batch becomes output
pixels. ``stages.video.VideoWrite`` drives it into files (the headless command, ComfyUI's VIDEO), so both
produce the same frames as Render Frames -> (upscale) -> Paste Back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np
import torch

from ..errors import MotionError, PortraitError
from ..image.face_restore import FaceRestorer
from ..image.paste_back import Compositor, PasteOptions
from ..image.pixels import to_uint8
from ..image.upscale import Upscaler
from ..models.motion_autoencoder import MotionAutoencoder
from ..types import FPS, PortraitCode
from .renderer import Batches, check_latents, iter_frames, model_device

PIXELS_PER_PIECE = 32 * 2**20
"""Output pixels handed on at a time (about 100 MB of uint8 RGB): a GPU renders 64 frames per batch, which
pasted into a 4K picture would be 1.6 GB at once."""

Finisher = Callable[[int, torch.Tensor], Iterator[np.ndarray]]
"""``finish(start, batch)``: a rendered batch (n,3,256,256) 0..1 that begins at frame ``start`` -> uint8 pieces
(k,H,W,3) of the output."""


@dataclass(frozen=True)
class VideoRender:
    """One take of a motion, to be rendered on demand.

    original: the full picture the portrait was cropped from; when given, every frame is pasted back into it
    (``paste``). restorer: a face model that turns each 256x256 head into a sharp face of its side (512), first;
    upscaler: applied next, to the (restored) frames, before paste back. The face model goes first because it was
    trained on small, soft faces like the render, while an upscaler only sharpens what it is given; an upscaler
    after it adds pixels where the head in the picture is larger than the face model's side.
    """

    renderer: MotionAutoencoder
    portrait: PortraitCode
    latents: torch.Tensor
    fps: float = FPS
    original: Optional[torch.Tensor] = None
    paste: PasteOptions = PasteOptions()
    upscaler: Optional[Upscaler] = None
    batch_size: Optional[int] = None
    restorer: Optional[FaceRestorer] = None

    def check(self) -> "VideoRender":
        """Refuse what would fail later, before any frame is rendered."""
        check_latents(self.renderer, self.latents)
        if not (isinstance(self.fps, (int, float)) and self.fps > 0):
            raise MotionError(f"the frame rate must be positive, got {self.fps!r}")
        self.paste.check()
        if self.original is not None:
            self._compositor(torch.device("cpu"))  # validates the picture against the crop box
        return self

    @property
    def num_frames(self) -> int:
        return int(self.latents.shape[0])

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    @property
    def device(self) -> torch.device:
        return model_device(self.renderer)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames, known without rendering any."""
        if self.original is not None:
            h, w = self.original.shape[-3:-1]
            return int(w), int(h)
        side = self.restorer.side if self.restorer is not None else self.renderer.size
        side *= self.upscaler.scale if self.upscaler is not None else 1
        return side, side

    @property
    def piece_frames(self) -> int:
        """Frames per uint8 piece: at most ``PIXELS_PER_PIECE`` output pixels."""
        width, height = self.size
        return max(1, PIXELS_PER_PIECE // (width * height))

    def _compositor(self, device: torch.device) -> Compositor:
        if self.portrait.crop is None:
            raise PortraitError("paste back needs the portrait's crop box; load the portrait with Load Portrait "
                                "(or the headless command) from the same picture")
        return Compositor(self.original, self.portrait.crop, self.paste, device=device)

    def batches(self, latents: Optional[torch.Tensor] = None) -> Batches:
        """The rendered batches of the clip (or of ``latents``), lazily: nothing renders before it is asked for."""
        return iter_frames(self.renderer, self.portrait, self.latents if latents is None else latents,
                           self.batch_size)

    def _upscaled(self, batch: torch.Tensor) -> torch.Tensor:
        """Face-restored, then upscaled, as the clip asks."""
        if self.restorer is not None:
            batch = self.restorer(batch)
        return self.upscaler(batch) if self.upscaler is not None else batch

    def reference_frame(self) -> torch.Tensor:
        """The clip's first frame rendered alone (3,H,W) 0..1, restored and upscaled: what the colour match is
        estimated from, bit for bit the same whatever batch size renders the clip."""
        (_, first), = iter_frames(self.renderer, self.portrait, self.latents[:1], 1)
        return self._upscaled(first)[0]

    def finisher(self) -> Finisher:
        """How each rendered batch becomes output pixels: restored and upscaled, pasted back (colours matched to the
        clip's first frame) and cut into uint8 pieces. Prepared once per clip."""
        compositor = self._compositor(self.device) if self.original is not None else None
        piece = self.piece_frames

        def finish(start: int, batch: torch.Tensor) -> Iterator[np.ndarray]:
            batch = self._upscaled(batch)
            if compositor is not None and compositor.color is None:
                alone = start == 0 and batch.shape[0] == 1
                compositor.match_colors(batch[0] if alone else self.reference_frame())
            for s in range(0, batch.shape[0], piece):
                part = batch[s: s + piece]
                yield compositor.paste_uint8(part) if compositor else to_uint8(part.permute(0, 2, 3, 1))

        return finish
