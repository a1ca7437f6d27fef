"""Super-resolution of rendered frames with an upscale model (ESRGAN family and friends) via spandrel.

spandrel is the library ComfyUI itself loads upscale models with; it is an optional dependency of the
headless command (inside ComfyUI the UPSCALE_MODEL comes from ComfyUI's own loader). The weights are read
with the pack's safe reader (tensors only, never code) and handed to spandrel as a state dict. A face-restoration
file (GFPGAN, RestoreFormer; CodeFormer with ``spandrel_extra_arches``) is recognised wherever an upscale model is
taken and becomes a ``FaceRestorer`` instead (see ``face_restore``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch

from ..errors import AniTalkerError, CheckpointError
from ..models.checkpoints import read_state_dict
from .face_restore import FaceRestorer, face_restorer, is_face_model

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


def _spandrel():
    try:
        import spandrel
    except ImportError as exc:
        raise CheckpointError("upscale models need the 'spandrel' package (the library ComfyUI uses for them): "
                              "pip install spandrel") from exc
    try:  # CodeFormer and other non-commercial architectures, only when the user installed them (as ComfyUI does)
        from spandrel_extra_arches import EXTRA_REGISTRY
    except ImportError:
        return spandrel
    spandrel.MAIN_REGISTRY.add(*EXTRA_REGISTRY, ignore_duplicates=True)
    return spandrel


def load_upscale_model(path: Union[str, Path], device: Union[str, torch.device] = "cpu",
                       dtype: Optional[torch.dtype] = None) -> ImageModel:
    """An upscale model file (.pth/.safetensors, e.g. RealESRGAN_x2.pth) -> an ``Upscaler`` on ``device``; a
    face-restoration file (e.g. GFPGANv1.4.pth) -> a ``FaceRestorer``."""
    spandrel = _spandrel()
    path = Path(path)
    state = read_state_dict(path)
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(spandrel.canonicalize_state_dict(state))
    except Exception as exc:  # spandrel raises its own UnsupportedModelError and KeyErrors for unknown layouts
        raise CheckpointError(f"{path} is not an upscale model spandrel knows ({type(exc).__name__}: "
                              f"{str(exc)[:200]}); use an ESRGAN/Real-ESRGAN/SwinIR-style .pth or .safetensors, or a "
                              "face-restoration model such as GFPGANv1.4.pth") from exc
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise CheckpointError(f"{path} is a {type(descriptor).__name__}, not a single-image upscale model")
    if is_face_model(descriptor):
        return face_restorer(descriptor, device, dtype or torch.float32, name=path.name)
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
