"""anitalker-comfy: AniTalker talking heads as ComfyUI nodes (V3 API). Nothing heavy happens at import."""

if __package__:  # imported as a top-level module (pytest, from a folder whose name is no Python identifier): no nodes
    try:
        from .nodes import comfy_entrypoint  # noqa: F401
    except ModuleNotFoundError as exc:  # imported outside ComfyUI (e.g. by pytest): there are no nodes to offer
        if exc.name != "comfy_api":
            raise
