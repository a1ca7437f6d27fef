"""anitalker-comfy: AniTalker talking heads as ComfyUI nodes (V3 API). Nothing heavy happens at import."""

from .nodes import comfy_entrypoint  # noqa: F401
