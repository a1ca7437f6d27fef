"""AniTalker in pure PyTorch: identity-decoupled motion encoder, diffusion motion generator with a variance
adapter, and a warp-based renderer, loading the official released checkpoints unmodified.

Nothing here imports ComfyUI; the nodes in ``nodes/`` and the headless command (``python -m anitalker_core``)
are thin layers over ``anitalker_core.pipeline``.
"""

__version__ = "0.1.0"
