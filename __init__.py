"""anitalker-comfy: AniTalker talking heads as ComfyUI nodes (V3 API). Nothing heavy happens at import."""

WEB_DIRECTORY = "./web"
"""The pack's front-end extension (node messages, widget labels); ComfyUI serves it under /extensions/."""

if __package__:  # pytest may import this file alone, as a plain module of a clone named like "anitalker-comfy"
    try:
        from .nodes import comfy_entrypoint  # noqa: F401
    except ModuleNotFoundError as exc:  # imported outside ComfyUI (e.g. by pytest): there are no nodes to offer
        if exc.name != "comfy_api":
            raise
