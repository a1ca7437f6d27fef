"""AniTalker in pure PyTorch: identity-decoupled motion encoder, diffusion motion generator with a variance
adapter, and a warp-based renderer, loading the official released checkpoints unmodified.

Nothing here imports ComfyUI; the nodes in ``nodes/`` and the headless command (``python -m anitalker_core``)
are thin layers over ``anitalker_core.pipeline``. The names below are importable from the package itself
(``from anitalker_core import Animation``); each is loaded when first asked for, so importing the package
costs nothing.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "pipeline": ("Animation", "portrait_from_image", "features_from_audio", "generate_motion", "motion_from_video",
                 "motion_take", "render_motion"),
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
    "video.frame_sequence": ("FrameSequenceWriter", "SequenceOptions"),
    "video.writers": ("Mp4Writer", "ProResWriter"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
