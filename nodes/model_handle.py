"""Models under ComfyUI's model management: where they run (ComfyUI's device for 'auto'), loaded onto it when a
node needs them and offloadable in between, and upscale models (spandrel descriptors) as the core's Upscaler, or
its FaceRestorer when the descriptor is a face-restoration model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from ..anitalker_core.device_policy import resolve_device
from ..anitalker_core.errors import AniTalkerError
from ..anitalker_core.image.face_restore import face_restorer, face_side, is_face_model
from ..anitalker_core.image.upscale import ImageModel, Upscaler
from .fallbacks import MISSING, unavailable


def execution_device(choice: str) -> torch.device:
    """A node's device choice by the pack's one policy (``device_policy``); 'auto' is ComfyUI's own device."""
    host = None
    if choice == "auto":
        try:
            import comfy.model_management as mm
        except MISSING as exc:
            unavailable("device selection", exc, "'auto' picks CUDA if present, else the CPU")
        else:
            host = torch.device(mm.get_torch_device())
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
        except MISSING as exc:  # plain .to() below still works without ComfyUI's bookkeeping
            unavailable("model management", exc, "AniTalker moves its models by hand and ComfyUI cannot offload "
                                                 "them")
            return
        self.patcher = comfy.model_patcher.ModelPatcher(self.model, load_device=self.device,
                                                        offload_device=mm.unet_offload_device())

    def activate(self, memory_required: int = 0) -> torch.nn.Module:
        """Make sure the weights are on the execution device (loading them back if ComfyUI offloaded them), with
        ``memory_required`` bytes free beside them (ComfyUI unloads other models to make room). Errors of the
        loading itself, out of memory among them, are the user's to see."""
        if self.patcher is not None:
            import comfy.model_management as mm

            mm.load_models_gpu([self.patcher], memory_required=memory_required)
        first = next(self.model.parameters())
        if first.device != self.device:
            self.model.to(self.device)
        return self.model


def upscaler(descriptor: Any, device: torch.device, what: str = "upscale_model") -> ImageModel:
    """ComfyUI's UPSCALE_MODEL (a spandrel descriptor) as the core's Upscaler, or FaceRestorer for a face model, on
    the execution device.

    Like ComfyUI's own upscale node: make room on the device, move the model there for the work; ``release``
    puts it back on the CPU afterwards."""
    if not hasattr(descriptor, "scale") or not callable(descriptor):
        raise AniTalkerError(f"{what} must come from ComfyUI's Load Upscale Model node")
    face = is_face_model(descriptor)
    growth = (face_side(descriptor) / 256) ** 2 if face else max(descriptor.scale, 1) ** 2
    try:
        import comfy.model_management as mm
    except MISSING as exc:
        unavailable("memory management", exc, "the upscale model is moved without freeing room first")
    else:
        weights = sum(t.numel() * t.element_size() for t in descriptor.model.state_dict().values())
        mm.free_memory(weights + 256 * 256 * 3 * 4 * growth * 384, device)
    if face:
        return face_restorer(descriptor, device)
    descriptor.to(device)
    dtype = next(descriptor.model.parameters()).dtype
    return Upscaler(lambda x: descriptor(x.to(device=device, dtype=dtype)), descriptor.scale)


def release_upscaler(descriptor: Any) -> None:
    if descriptor is not None:
        descriptor.to("cpu")


def output_side(side: int, *descriptors: Optional[Any]) -> int:
    """The side of a crop of ``side`` after these UPSCALE_MODELs (a face model first, then an upscaler), known
    without moving or running them."""
    given = [d for d in descriptors if d is not None]
    for d in given:
        if is_face_model(d):
            side = face_side(d)
    for d in given:
        if not is_face_model(d):
            side *= int(d.scale)
    return side
