"""An upscale or face-restoration model file as its authors saved it, read one way for the command and manifests.

Their training code wraps the weights: GFPGAN, Real-ESRGAN and CodeFormer save ``{"params_ema": ...}`` (or
``params``), others ``state_dict``, ``model`` or ``net``, some with DataParallel's ``module.`` prefix. The file is
read tensors-only (``weights.reader``: never code from it), then unwrapped by spandrel's own canonicalisation, the
one its loader applies inside ComfyUI's Load Upscale Model, so a layout spandrel learns later loads here too; then
spandrel identifies the architecture. spandrel is the library ComfyUI loads these models with; the headless command
needs it only for them (``pip install spandrel``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import torch

from ..errors import CheckpointError
from ..weights.reader import Source, checkpoint_kind, describe_keys, read_weights

IMAGE_MODEL = Source("upscale or face model", "Upscale and face models as their authors publish them hold tensors "
                                              "only; download the file again from its authors")
KNOWN_MODELS = ("an ESRGAN/Real-ESRGAN/SwinIR-style upscale model or a face-restoration model such as GFPGANv1.4.pth "
                "(.pth, .pt, .ckpt or .safetensors)")

BUILD_ERRORS = (KeyError, ValueError, RuntimeError, IndexError, AssertionError)
"""What an architecture spandrel detected raises when the weights do not fit it after all (a missing key, a wrong
shape): that file is damaged or a variant spandrel does not know."""


def spandrel_module():
    """spandrel, with CodeFormer and the other non-commercial architectures registered when the user installed
    ``spandrel_extra_arches`` (as ComfyUI does)."""
    try:
        import spandrel
    except ImportError as exc:
        raise CheckpointError("upscale and face models need the 'spandrel' package (the library ComfyUI uses for "
                              "them): pip install spandrel") from exc
    try:
        from spandrel_extra_arches import EXTRA_REGISTRY
    except ImportError:
        return spandrel
    spandrel.MAIN_REGISTRY.add(*EXTRA_REGISTRY, ignore_duplicates=True)
    return spandrel


def image_state_dict(path: Union[str, Path]) -> dict[str, torch.Tensor]:
    """The weights in an image-model file, unwrapped from whatever layout its authors saved it in."""
    spandrel = spandrel_module()
    path = Path(path)
    data = read_weights(path, IMAGE_MODEL)
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not a dictionary of weights; use "
                              f"{KNOWN_MODELS}")
    state = spandrel.canonicalize_state_dict(dict(data))
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} holds no weight tensors where spandrel looks for them (it holds "
                              f"{_entries(state)}); use {KNOWN_MODELS}")
    return tensors


def load_image_model(path: Union[str, Path]) -> Any:
    """An image-model file -> spandrel's ``ImageModelDescriptor`` on the CPU in eval mode; ``CheckpointError`` naming
    what the file holds when it is no image model spandrel knows."""
    spandrel = spandrel_module()
    path = Path(path)
    state = image_state_dict(path)
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    except spandrel.UnsupportedModelError as exc:
        raise CheckpointError(f"{path} is not an upscale or face model spandrel knows: {_found(state)}; use "
                              f"{KNOWN_MODELS}") from exc
    except BUILD_ERRORS as exc:
        raise CheckpointError(f"{path} has the layout of a model spandrel knows, but its weights do not fit it "
                              f"({type(exc).__name__}: {str(exc)[:200]}); the file is damaged or a variant spandrel "
                              "cannot build, download it again or use another model") from exc
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise CheckpointError(f"{path} is a {descriptor.architecture.name} model ({type(descriptor).__name__}), not a "
                              "single-image upscale or face model")
    return descriptor.eval()


def _found(state: dict[str, torch.Tensor]) -> str:
    kind = checkpoint_kind(state)
    if kind != "unknown model":
        return f"it is an AniTalker {kind} checkpoint, which the pack loads from its models folder"
    return f"its {len(state)} tensors are named {describe_keys(list(state))}"


def _entries(state: Mapping) -> str:
    """The top-level entries of a file without tensors, each with its type: what the user actually has."""
    if not state:
        return "an empty dictionary"
    return describe_keys([f"{k} ({type(v).__name__})" for k, v in state.items()])
