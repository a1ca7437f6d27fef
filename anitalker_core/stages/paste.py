"""Pasting an IMAGE batch back into its picture as a stage: the output is the whole batch at the picture's full
size, so it grows with length x size; timed on two frames after the first (which fixes the colour match)."""

from __future__ import annotations

from typing import Optional

import torch

from ..image.paste_back import PASTE_CHUNK, Compositor, PasteOptions, check_image_frames
from ..types import CropBox, ProgressCallback
from .estimate import STREAM, Need, Part, Step, image_bytes
from .measure import measure

CPU = torch.device("cpu")


class PasteBackImages:
    """Rendered frames (T,h,w,3) 0..1 -> (T,H,W,3) float32 on the CPU, pasted into ``original``."""

    def __init__(self, original: torch.Tensor, frames: torch.Tensor, box: CropBox,
                 options: PasteOptions = PasteOptions()) -> None:
        check_image_frames(frames)
        self.frames = frames
        self.device = CPU
        # the compositor checks the picture against the box; its preparation is part of the run's cost
        self._prepared = measure(lambda: Compositor(original, box, options).match_colors(
            frames[0].permute(2, 0, 1)), CPU)
        self.compositor = self._prepared.value
        self._done: Optional[torch.Tensor] = None  # the frames the estimate pasted

    def estimate(self) -> Step:
        frames, count = self.frames, self.frames.shape[0]
        first = measure(lambda: self.compositor.paste(frames[:1].permute(0, 3, 1, 2)), CPU, memory=False)
        probe = frames[1:3].permute(0, 3, 1, 2)
        timed = measure(lambda: self.compositor.paste(probe), CPU) if probe.shape[0] else first
        self._done = torch.cat([first.value, timed.value]) if probe.shape[0] else first.value
        # each pasted chunk is then copied into the whole batch's output, memory touched for the first time
        stored = measure(lambda: torch.empty_like(timed.value).copy_(timed.value), CPU, memory=False)
        height, width = first.value.shape[1:3]
        per_frame = (timed.seconds + stored.seconds) / timed.value.shape[0]
        work = timed.host_bytes / timed.value.shape[0] if probe.shape[0] else image_bytes(2, width, height)
        chunk = min(PASTE_CHUNK, count)
        prepared = self._prepared
        host = (Need(f"IMAGE output of {count} frames at {width}x{height}", image_bytes(count, width, height),
                     STREAM),
                Need(f"pasting {chunk} frames at once", int(prepared.host_bytes + work * chunk), STREAM))
        return Step((Part("paste back", prepared.seconds + per_frame * count, f"{per_frame:.2f} s/frame"),),
                    host=host)

    def run(self, callback: Optional[ProgressCallback] = None) -> torch.Tensor:
        """Frames are resized and blended ``PASTE_CHUNK`` at a time, so the work memory stays that of a few crops
        even for a 4K picture (the output itself is the whole batch: for long clips use Render Video)."""
        count = self.frames.shape[0]
        c = self.compositor
        out = torch.empty((count, c.height, c.width, 3), dtype=torch.float32)
        done = 0
        if self._done is not None:
            done = self._done.shape[0]
            out[:done] = self._done
            self._done = None
        for s in range(done, count, PASTE_CHUNK):
            out[s: s + PASTE_CHUNK] = c.paste(self.frames[s: s + PASTE_CHUNK].permute(0, 3, 1, 2))
            if callback is not None:
                callback(min(s + PASTE_CHUNK, count), count)
        return out
