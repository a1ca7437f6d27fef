"""Restoring the faces of an IMAGE batch as a stage (the Face Restore node): the first chunks restored and timed,
then the rest, chunk by chunk with progress. The output is the whole batch at the face model's side."""

from __future__ import annotations

from typing import Optional

import torch

from ..image.face_restore import FaceRestorer, check_faces
from ..image.paste_back import check_image_frames
from ..types import PreviewCallback, ProgressCallback
from .estimate import Need, Part, Step, image_bytes, measured_needs, merge_needs
from .measure import measure

RESTORE_STREAM = ("restore inside Render Video (its face_model input): it streams the frames into the file, so "
                  "memory stays that of one batch whatever the length (headless: --face-restore)")


class FaceRestoreImages:
    """Frames (T,h,w,3) 0..1 on the CPU -> restored faces (T,side,side,3) float32 on the CPU, ``restorer.batch``
    frames at a time on ``device`` (where the restorer's model is)."""

    def __init__(self, restorer: FaceRestorer, frames: torch.Tensor, device: torch.device) -> None:
        check_image_frames(frames)
        check_faces(frames[:1].permute(0, 3, 1, 2))
        self.restorer, self.frames, self.device = restorer, frames, torch.device(device)
        self._done: list[torch.Tensor] = []  # the chunks the estimate restored

    def _chunk(self, start: int) -> torch.Tensor:
        part = self.frames[start: start + self.restorer.batch].permute(0, 3, 1, 2).to(self.device)
        return self.restorer(part).permute(0, 2, 3, 1).cpu()

    def estimate(self) -> Step:
        """Restores the first chunk (memory counted; it pays one-off set-up) and, when there is more, a second one
        (timed): the run goes on from both."""
        count, batch, side = self.frames.shape[0], self.restorer.batch, self.restorer.side
        first = measure(lambda: self._chunk(0), self.device)
        self._done = [first.value]
        timed = first
        if count > batch:
            timed = measure(lambda: self._chunk(batch), self.device, memory=False)
            self._done.append(timed.value)
        per_frame = timed.seconds / timed.value.shape[0]
        setup = max(first.seconds - per_frame * first.value.shape[0], 0.0) if timed is not first else 0.0
        host = (Need(f"IMAGE output of {count} faces at {side}x{side}", image_bytes(count, side, side),
                     RESTORE_STREAM),)
        work = measured_needs(self.device, f"restoring {batch} faces at once", first.host_bytes, first.device_bytes,
                              RESTORE_STREAM)
        return Step((Part("face restore", setup + per_frame * count, f"{per_frame:.2f} s/frame"),),
                    **merge_needs({"host": host}, work))

    def run(self, callback: Optional[ProgressCallback] = None,
            preview: Optional[PreviewCallback] = None) -> torch.Tensor:
        count, side = self.frames.shape[0], self.restorer.side
        out = torch.empty((count, side, side, 3), dtype=torch.float32)
        done = 0
        chunks, self._done = self._done, []
        while done < count:
            chunk = chunks.pop(0) if chunks else self._chunk(done)
            out[done: done + chunk.shape[0]] = chunk
            done += chunk.shape[0]
            if preview is not None:
                preview(chunk[-1])
            if callback is not None:
                callback(done, count)
        return out
