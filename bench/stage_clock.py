"""Where one clip's wall time goes on the headless path: seconds per stage, for a bench.

The headless path says when each stage starts (its progress calls: "speech features", "sampling motion",
"rendering frames"), which splits the run into inputs and estimate, features, sampling and video. Inside the video
stage the renderer, the face model, paste back and the encoder interleave batch by batch, so timers are put around
each of them for the length of one run (and taken off again): the render batches, the face model's calls, the
pastes, the crops' move to the host, and, on the writer thread, the encoder (whose seconds overlap the rest), with
the time the main thread waited for it. On a GPU every timer synchronises the device first and last, at points where
the path waits for the device anyway (each batch's pixels go to the host), so the figures are the GPU's work.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from typing import Callable, Iterator, Optional
from unittest import mock

import torch

from anitalker_core.image.face_restore import FaceRestorer
from anitalker_core.image.paste_back import Compositor
from anitalker_core.video import video_render, writers
from anitalker_core.video.video_render import VideoRender

STAGES = {"speech features": "features", "sampling motion": "sampling", "rendering frames": "video"}
"""The headless path's progress descriptions -> the stage each one starts."""
FIRST_STAGE = "inputs_and_estimate"
"""Reading the inputs, the portrait's crop and code, loading what is not loaded yet, and the estimate's warm-up."""
MAIN_PARTS = ("rendering", "restore", "paste", "frames_to_host", "waiting_for_encoder")
"""Parts of the video stage on the main thread, one after another; what they leave of the stage is ``video_other``."""


class StageClock:
    """Seconds per stage of one run (``with clock.run(): ...``, passing ``clock.progress`` as the path's progress)."""

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.stage: Optional[str] = None
        self.stages: dict[str, float] = {}
        self.parts: dict[str, float] = defaultdict(float)
        self._since = 0.0
        self._lock = threading.Lock()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _mark(self, stage: Optional[str]) -> None:
        self._sync()
        now = time.perf_counter()
        if self.stage is not None:
            self.stages[self.stage] = self.stages.get(self.stage, 0.0) + now - self._since
        self.stage, self._since = stage, now

    def progress(self, desc: str) -> None:
        """The path's progress factory: marks the start of a stage and asks for no progress bar."""
        self._mark(STAGES.get(desc, desc))

    @contextlib.contextmanager
    def part(self, name: str, sync: bool = True) -> Iterator[None]:
        """Time one call as ``name`` when it runs inside the video stage (the estimate's warm-up makes the same
        calls earlier, and belongs to the first stage)."""
        if self.stage != "video":
            yield
            return
        if sync:
            self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            if sync:
                self._sync()
            with self._lock:
                self.parts[name] += time.perf_counter() - start

    def _timed(self, name: str, call: Callable, sync: bool = True) -> Callable:
        def timed(*args, **kwargs):
            with self.part(name, sync):
                return call(*args, **kwargs)

        return timed

    def _timed_batches(self, batches: Callable) -> Callable:
        clock = self

        def timed(clip: VideoRender, latents: Optional[torch.Tensor] = None):
            inner = iter(batches(clip, latents))

            def each():
                while True:
                    with clock.part("rendering"):
                        item = next(inner, None)
                    if item is None:
                        return
                    yield item

            return each()

        return timed

    @contextlib.contextmanager
    def run(self) -> Iterator["StageClock"]:
        """Times one run: the first stage starts now, the last ends when the block does."""
        patches = (
            mock.patch.object(VideoRender, "batches", self._timed_batches(VideoRender.batches)),
            mock.patch.object(FaceRestorer, "__call__", self._timed("restore", FaceRestorer.__call__)),
            mock.patch.object(Compositor, "paste_samples", self._timed("paste", Compositor.paste_samples)),
            mock.patch.object(video_render, "to_samples", self._timed("frames_to_host", video_render.to_samples)),
            mock.patch.object(writers._MuxedWriter, "write", self._timed("encoding", writers._MuxedWriter.write,
                                                                        sync=False)),
            mock.patch.object(writers.BackgroundWriter, "write",
                              self._timed("waiting_for_encoder", writers.BackgroundWriter.write, sync=False)),
            mock.patch.object(writers.BackgroundWriter, "finish",
                              self._timed("waiting_for_encoder", writers.BackgroundWriter.finish, sync=False)),
        )
        with contextlib.ExitStack() as stack:
            for patch in patches:
                stack.enter_context(patch)
            self._mark(FIRST_STAGE)
            try:
                yield self
            finally:
                self._mark(None)

    @property
    def seconds(self) -> float:
        return sum(self.stages.values())

    def figures(self) -> dict[str, float]:
        """Seconds by stage, then the video stage's parts: those on the main thread, what they leave of it
        (``video_other``: cutting pieces, the colour match's reference frame, queueing), and ``encoding``, the writer
        thread's own seconds, which overlap the rest."""
        out = {name: round(self.stages.get(name, 0.0), 4) for name in (FIRST_STAGE, *STAGES.values())}
        out.update({name: round(self.parts.get(name, 0.0), 4) for name in MAIN_PARTS})
        main = sum(self.parts.get(name, 0.0) for name in MAIN_PARTS)
        out["video_other"] = round(max(self.stages.get("video", 0.0) - main, 0.0), 4)
        out["encoding"] = round(self.parts.get("encoding", 0.0), 4)
        return out
