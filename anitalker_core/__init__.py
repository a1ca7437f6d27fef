"""AniTalker in pure PyTorch: identity-decoupled motion encoder, diffusion motion generator with a variance
adapter, and a warp-based renderer, loading the official released checkpoints unmodified.

Nothing here imports ComfyUI; the nodes in ``nodes/`` and the headless command (``python -m anitalker_core``)
are thin layers over ``anitalker_core.pipeline``. The names below are importable from the package itself
(``from anitalker_core import Animation``); each is loaded when first asked for, so importing the package
costs nothing.
"""

from importlib import import_module
from pathlib import Path

DISTRIBUTION = "anitalker-comfy"

_EXPORTS = {
    "pipeline": ("Animation", "Conversation", "portrait_from_image", "features_from_audio", "generate_motion",
                 "motion_from_video", "motion_take", "render_motion"),
    "options": ("ClipOptions",),
    "types": ("PortraitCode", "AudioFeatures", "VarianceControl", "Motion", "CropBox", "FPS", "SAMPLE_RATE"),
    "errors": ("AniTalkerError",),
    "stages": ("SpeechFeatures", "MotionSampling", "FrameRender", "VideoWrite", "PasteBackImages",
               "FaceRestoreImages", "RunEstimate", "run_estimate"),
    "models.checkpoints": ("load_stage1", "load_stage2"),
    "audio.features": ("HubertFeatures", "MfccFeatures"),
    "image.paste_back": ("PasteOptions",),
    "image.face_restore": ("FaceRestorer", "RestoreOptions"),
    "video.video_render": ("VideoRender", "OutputPixels"),
    "video.conversation": ("onto",),
    "video.frame_sequence": ("FrameSequenceWriter", "SequenceOptions"),
    "video.writers": ("Mp4Writer", "ProResWriter"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def _version() -> str:
    """The version's one home is pyproject.toml, where pip and the Comfy Registry read it. ComfyUI loads the pack
    from its folder (a clone, never installed), where that file sits beside this package; an installed wheel has
    no pyproject.toml but carries the version in its metadata, which the build wrote from the same file."""
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if pyproject.is_file():
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == DISTRIBUTION:
            return project["version"]
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError as exc:
        raise AttributeError(f"anitalker_core has no version here: neither the pack's pyproject.toml beside it nor "
                             f"an installed {DISTRIBUTION} (install it with pip, or use a clone)") from exc


def __getattr__(name: str):
    if name == "__version__":
        return _version()
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
