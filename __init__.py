"""anitalker-comfy: AniTalker talking heads as ComfyUI nodes (V3 API). Nothing heavy happens at import."""

# pytest imports this file too, as a lone module when the folder's name is no Python name ("anitalker-comfy")
if __package__:
    try:
        from .nodes import comfy_entrypoint  # noqa: F401
    except ModuleNotFoundError as exc:  # imported outside ComfyUI (e.g. by pytest): there are no nodes to offer
        if exc.name != "comfy_api":
            raise
