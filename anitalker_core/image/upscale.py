"""Super-resolution of rendered frames with an upscale model (ESRGAN family and friends) via spandrel.

spandrel is the library ComfyUI itself loads upscale models with; it is an optional dependency of the
headless command (inside ComfyUI the UPSCALE_MODEL comes from ComfyUI's own loader). Files are read by
``model_file`` (tensors only, never code, in whatever layout their authors saved). A face-restoration
file (GFPGAN, RestoreFormer; CodeFormer with ``spandrel_extra_arches``) is recognised wherever an upscale model is
taken and becomes a ``FaceRestorer`` instead (see ``face_restore``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch

from ..errors import AniTalkerError
from .face_restore import FaceRestorer, face_restorer, is_face_model
from .model_file import load_image_model

UPSCALE_BATCH = 8
"""Frames per upscale call: super-resolution networks need far more activation memory per frame than the
renderer, so a render batch is upscaled in slices."""


class Upscaler:
    """``upscaler(frames)``: (n,3,h,w) 0..1 -> (n,3,h*scale,w*scale) 0..1 on the frames' device.

    ``run`` is the model call on one slice; the slicing and clamping live here so the ComfyUI adapter and the
    headless command share them.
    """

    def __init__(self, run: Callable[[torch.Tensor], torch.Tensor], scale: int, batch: int = UPSCALE_BATCH,
                 name: str = "") -> None:
        self.run, self.scale, self.batch, self.name = run, int(scale), max(1, int(batch)), name

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        parts = [self.run(frames[s: s + self.batch]).float().clamp(0, 1) for s in range(0, frames.shape[0], self.batch)]
        return torch.cat(parts) if len(parts) > 1 else parts[0]


ImageModel = Union[Upscaler, FaceRestorer]


def load_upscale_model(path: Union[str, Path], device: Union[str, torch.device] = "cpu",
                       dtype: Optional[torch.dtype] = None) -> ImageModel:
    """An upscale model file (.pth/.safetensors, e.g. RealESRGAN_x4plus.pth) -> an ``Upscaler`` on ``device``; a
    face-restoration file (e.g. GFPGANv1.4.pth) -> a ``FaceRestorer``. Files load in their authors' layouts
    (``model_file``). ``dtype``: the precision to run in; None: the pack's choice for the model and the device."""
    path = Path(path)
    descriptor = load_image_model(path)
    if is_face_model(descriptor):  # in fp32 unless asked, and then exactly as asked (else see face_autocast)
        return face_restorer(descriptor, device, dtype or torch.float32, name=path.name, exact=dtype is not None)
    device = torch.device(device)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" and descriptor.supports_half else torch.float32
    descriptor.to(device).to(dtype).eval()

    def run(x: torch.Tensor) -> torch.Tensor:  # the descriptor pads to the network's size needs and clamps
        return descriptor(x.to(device=device, dtype=dtype))

    return Upscaler(run, descriptor.scale, name=f"{path.name} ({descriptor.architecture.name}, {descriptor.scale}x)")


def split_models(models: Sequence[tuple[str, Optional[ImageModel]]]
                 ) -> tuple[Optional[FaceRestorer], Optional[Upscaler]]:
    """(input name, model) pairs given for one clip -> its face model and its upscale model, whichever input
    each came through; two of one kind are refused, naming both inputs."""
    found: dict[type, tuple[str, ImageModel]] = {}
    for where, model in models:
        if model is None:
            continue
        kind = FaceRestorer if isinstance(model, FaceRestorer) else Upscaler
        if kind in found:
            what = "face-restoration" if kind is FaceRestorer else "upscale"
            raise AniTalkerError(f"{found[kind][0]} and {where} are both {what} models; give one face-restoration "
                                 "model (GFPGAN, RestoreFormer, CodeFormer) and at most one upscale model")
        found[kind] = (where, model)
    face, upscale = found.get(FaceRestorer), found.get(Upscaler)
    return (face[1] if face else None), (upscale[1] if upscale else None)
