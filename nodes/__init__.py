"""ComfyUI nodes for AniTalker: thin adapters from ComfyUI types to ``anitalker_core``."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .compositing import SaveFrames, SaveProRes
from .dubbing import DubMotion, FollowFace
from .animation import (AudioEncode, ConversationTracks, DiffusionSampler, LoadPortrait, MotionExtract, RenderFrames,
                        VarianceControl)
from .editing import (CalmSilence, LoadMotion, MotionBlend, MotionSmooth, MotionStrength, PasteBack, SaveMotion,
                      SelectTake, SideBySide)
from .face_restore import FaceRestore
from .folders import register_face_folder, register_model_folder
from .inspection import MotionPlot, MotionToKeyframes
from .loaders import LoadAudioEncoder, LoadMotionGenerator, LoadRenderer
from .sample_inputs import copy_samples
from .video import RenderVideo

NODES: list[type[io.ComfyNode]] = [
    LoadRenderer, LoadMotionGenerator, LoadAudioEncoder, LoadPortrait, AudioEncode, VarianceControl,
    DiffusionSampler, MotionExtract, RenderFrames, PasteBack, MotionSmooth, MotionStrength, MotionBlend,
    SelectTake, SaveMotion, LoadMotion, SideBySide, RenderVideo, SaveFrames, SaveProRes, CalmSilence, MotionPlot,
    MotionToKeyframes, FaceRestore, ConversationTracks, FollowFace, DubMotion,
]


class AniTalkerExtension(ComfyExtension):
    async def on_load(self) -> None:
        register_model_folder()
        register_face_folder()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


async def comfy_entrypoint() -> AniTalkerExtension:
    register_model_folder()
    register_face_folder()
    copy_samples()  # the example workflows' input files, for a fresh install
    return AniTalkerExtension()
