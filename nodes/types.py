"""The pack's socket types and menu folders. Values are plain core records (or model handles), so nodes stay thin."""

from dataclasses import replace
from fractions import Fraction
from typing import Any, Optional

import torch
from comfy_api.latest import Input, Types, io

from ..anitalker_core.errors import AniTalkerError
from ..anitalker_core.image.face_restore import RestoreOptions
from ..anitalker_core.image.paste_back import MASKS, MAX_FEATHER, PasteOptions
from .fallbacks import unavailable

Renderer = io.Custom("ANITALKER_RENDERER")
Generator = io.Custom("ANITALKER_GENERATOR")
AudioEncoder = io.Custom("ANITALKER_AUDIO_ENCODER")
Portrait = io.Custom("ANITALKER_PORTRAIT")
AudioFeatures = io.Custom("ANITALKER_AUDIO_FEATURES")
Control = io.Custom("ANITALKER_CONTROL")
Motion = io.Custom("ANITALKER_MOTION")

RENDERER_TIP = "The renderer from Load Renderer."
PORTRAIT_TIP = "The face from Load Portrait (the same renderer's)."
MOTION_TIP = "A motion: from the Diffusion Motion Sampler, Motion from Video, Load Motion or an edit node."
"""Tooltips of the sockets that recur on many nodes: where the value comes from."""

CATEGORY = "AniTalker"
"""The pack's menu folder; every node sits in one of the subfolders below."""
CATEGORY_LOADERS = "AniTalker/loaders"
CATEGORY_MOTION = "AniTalker/motion"
CATEGORY_EDIT = "AniTalker/edit"
CATEGORY_RENDER = "AniTalker/render"

PASTE = PasteOptions()
"""The paste-back defaults, from their one home in the core."""
RESTORE = RestoreOptions()
"""The face-restoration defaults, from their one home in the core."""
FACE_MODELS = ("GFPGANv1.4.pth (or RestoreFormer; CodeFormer with spandrel_extra_arches) from Load Upscale Model, "
               "in models/upscale_models or models/facerestore_models")
SQUARE_PASTE = replace(PASTE, mask="box", color_match=False)
"""Paste Back's defaults: a feathered square in the rendered colours, the paste of release 0.1.0, before the node had
mask and color_match. Graphs saved then (without those inputs) and new nodes alike get it; the head mask with matched
colours is a choice on the node (the paste-back example workflow makes it)."""


def paste_back_inputs(defaults: PasteOptions = PASTE, added: tuple[str, ...] = ()) -> list:
    """The paste-back options, the same on Paste Back and Render Video. ``added``: those a node gained after graphs
    had been saved without them; they are optional, so ComfyUI accepts those graphs, and ``defaults`` must give
    them the node's earlier behaviour."""
    return [
        io.Float.Input("feather", default=defaults.feather, min=0.0, max=MAX_FEATHER, step=0.01,
                       optional="feather" in added,
                       tooltip="Width of the soft edge of the paste, as a fraction of the crop size."),
        io.Boolean.Input("color_match", default=defaults.color_match, optional="color_match" in added,
                         tooltip="Match the rendered colours to the picture around the head (estimated once from "
                                 "the clip's first frame, so it cannot flicker)."),
        io.Combo.Input("mask", options=list(MASKS), default=defaults.mask, optional="mask" in added,
                       tooltip="head: a soft ellipse around the head, the rest stays the original picture. box: the "
                               "whole square crop, feathered."),
    ]


def restore_inputs(optional: bool = False) -> list:
    """The face-restoration options, the same on Render Video and Face Restore; ``optional`` where a node gained
    them after graphs had been saved without them."""
    return [
        io.Float.Input("restore_strength", default=RESTORE.strength, min=0.0, max=1.0, step=0.05, optional=optional,
                       tooltip="1: the face model's face; lower blends in the plain resize to keep some of the "
                               "render's texture; 0: no restoration."),
        io.Float.Input("codeformer_fidelity", default=RESTORE.fidelity, min=0.0, max=1.0, step=0.05,
                       optional=optional,
                       tooltip="CodeFormer only: 0 its own sharp face, 1 closest to the render. GFPGAN and "
                               "RestoreFormer have no such weight and ignore it."),
    ]


try:  # ComfyUI's VIDEO base class, public since 0.3.4x
    VideoInput = Input.Video
except AttributeError as exc:
    unavailable("VIDEO type (comfy_api.latest.Input.Video)", exc,
                "Render Video's output is a stand-alone object that ComfyUI's own video nodes may not accept")

    class VideoInput:  # type: ignore[no-redef]
        """Stands in for ComfyUI's VIDEO base class where the running ComfyUI has none."""


def video_components(images: torch.Tensor, audio: Optional[dict], frame_rate: Fraction) -> Any:
    """ComfyUI's VideoComponents record (images, audio, frame rate)."""
    return Types.VideoComponents(images=images, audio=audio, frame_rate=frame_rate)


def frames_mask(matte: torch.Tensor, frames: int) -> torch.Tensor:
    """One (H,W) matte as a ComfyUI MASK for ``frames`` frames [T,H,W]: a broadcast view that costs one frame's
    memory whatever the length (a node that would write into it in place has to clone it first)."""
    return matte[None].expand(int(frames), -1, -1)


def optional_text(text: Optional[str]) -> str:
    """An optional STRING input as text ('' when it is not connected)."""
    return text.strip() if isinstance(text, str) else ""


def audio_track(audio: Optional[dict]) -> Optional[tuple[torch.Tensor, int]]:
    """ComfyUI AUDIO (or None) -> the core's track (waveform, rate), or None."""
    return None if audio is None else audio_parts(audio)


def audio_value(track: Optional[tuple[torch.Tensor, int]]) -> Optional[dict]:
    """The core's track (waveform (C,T) or [B,C,T], rate) -> ComfyUI AUDIO {"waveform": [B,C,T], "sample_rate"}."""
    if track is None:
        return None
    waveform, rate = track
    return {"waveform": waveform if waveform.ndim == 3 else waveform[None], "sample_rate": int(rate)}


def audio_parts(audio: Any) -> tuple[torch.Tensor, int]:
    """ComfyUI AUDIO ({"waveform": [B,C,T], "sample_rate": int}) -> (waveform, sample_rate)."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise AniTalkerError("the audio input is not ComfyUI AUDIO; connect a Load Audio node")
    return audio["waveform"], audio["sample_rate"]
