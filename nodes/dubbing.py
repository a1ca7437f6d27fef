"""Dubbing footage: Follow Face (the face found and followed through a VIDEO, its portrait and its own motion) and
Dub Motion (the footage's head with the speech's mouth). Render Video then pastes the dub into the footage."""

from __future__ import annotations

from typing import Any

import torch
from comfy_api.latest import io

from ..anitalker_core import pipeline
from ..anitalker_core.errors import AniTalkerError
from ..anitalker_core.image.face_track import FollowOptions
from ..anitalker_core.motion.dub import BLINKS, EXTENDS, DubOptions
from ..anitalker_core.stages.footage import FollowedFace, follow_face
from ..anitalker_core.video.footage import Footage, FootageFile, FootageFrames
from . import progress as shown
from .types import (CATEGORY_MOTION, MOTION_TIP, RENDERER_TIP, Motion, Portrait, Renderer, VideoInput, audio_track)

FootageType = io.Custom("ANITALKER_FOOTAGE")
FOLLOW = FollowOptions()
DUB = DubOptions()
FOOTAGE_TIP = "The footage with the face followed (Follow Face)."


def footage_of(video: Any) -> Footage:
    """A ComfyUI VIDEO as the core's ``Footage``. A VIDEO that reads from a file (Load Video) is read from that file
    a few frames at a time, within its trim; any other (Create Video, a trimmed or cropped one not yet saved) gives
    its frames in memory, as ComfyUI's VIDEO hands them over."""
    if not isinstance(video, VideoInput) and not hasattr(video, "get_components"):
        raise AniTalkerError(f"the footage is not a ComfyUI VIDEO but {type(video).__name__}; connect Load Video")
    reads_a_file = "get_stream_source" in {name for klass in type(video).__mro__[:-1]
                                           if klass is not VideoInput for name in vars(klass)}
    pending = getattr(video, "has_pending_frame_edits", lambda: False)()
    if reads_a_file and not pending:
        source = video.get_stream_source()
        if isinstance(source, (str, bytes)) or hasattr(source, "read"):
            start, duration = getattr(video, "get_active_trim_window", lambda: (0.0, 0.0))()
            footage = FootageFile(source, start, duration)
            if (footage.width, footage.height) == tuple(video.get_dimensions()):  # no crop waiting to be applied
                return footage
    parts = video.get_components()
    images = parts.images
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] == 0:
        raise AniTalkerError("the footage has no frames: connect a video with at least one frame")
    audio = audio_track(parts.audio) if isinstance(parts.audio, dict) else None
    return FootageFrames(images, parts.frame_rate, audio)


class FollowFace(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerFollowFace",
            display_name="Follow Face",
            category=CATEGORY_MOTION,
            description="Finds a face in footage and follows it through the shot (detected every few frames, "
                        "smoothed, found again after a cut), takes the portrait from the frame it is clearest in, "
                        "and reads the footage's own motion off it. Feed the portrait to the sampler with the new "
                        "speech, and both motions to Dub Motion.",
            inputs=[
                Renderer.Input("renderer", tooltip=RENDERER_TIP),
                io.Video.Input("video", tooltip="The footage to dub (Load Video). Read a few frames at a time, so "
                                                "any length fits."),
                io.Int.Input("face", default=FOLLOW.face, min=0, max=16,
                             tooltip="Which face when the shot has several: 0 the largest, 1 the leftmost, 2 the "
                                     "next, ... (numbered as in Load Portrait, on the portrait frame)."),
                io.Int.Input("portrait_frame", default=-1, min=-1, max=10**7,
                             tooltip="The frame (from 0) the face's look is taken from; -1: the first frame it is "
                                     "clearly seen in (both eyes found)."),
                io.Int.Input("detect_every", default=FOLLOW.every, min=1, max=30,
                             tooltip="Look for the face every N frames and follow it in between; 1 looks at every "
                                     "frame (slower, for fast movement)."),
            ],
            outputs=[Portrait.Output(display_name="portrait"), FootageType.Output(display_name="footage"),
                     io.Image.Output(display_name="face", tooltip="The face as the model sees it (256x256)."),
                     io.String.Output(display_name="info")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, renderer, video, face=FOLLOW.face, portrait_frame=-1, detect_every=FOLLOW.every
                ) -> io.NodeOutput:
        footage = footage_of(video)
        options = FollowOptions(int(face), None if portrait_frame < 0 else int(portrait_frame), int(detect_every))
        bar = shown.progress(footage.frame_count)
        followed = follow_face(renderer.activate(), footage, options, lambda desc: bar, bar.preview)
        crop = ((followed.portrait.image[0].permute(1, 2, 0).float().cpu() + 1) / 2).clamp(0, 1)[None]
        info = (f"{footage.width}x{footage.height}, {footage.frame_count} frames at {float(footage.fps):g} fps; "
                f"{followed.note}; portrait from frame {followed.track.portrait_frame}")
        return io.NodeOutput(followed.portrait, followed, crop, info, ui=shown.preview_ui(crop, info))


class DubMotion(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerDubMotion",
            display_name="Dub Motion",
            category=CATEGORY_MOTION,
            description="The motion of a dub: the footage's head (turns, sway) with the speech's mouth, at the "
                        "footage's frame rate and as long as the speech. Render it with Render Video, the footage "
                        "as original: the head is pasted where the footage's head is, frame by frame.",
            inputs=[
                FootageType.Input("footage", tooltip=FOOTAGE_TIP),
                Motion.Input("motion", tooltip="The speech's motion: the sampler's, for Follow Face's portrait. "
                                               + MOTION_TIP),
                io.Combo.Input("extend", options=list(EXTENDS), default=DUB.extend,
                               tooltip="Speech longer than the footage: pingpong plays it forward then backward "
                                       "(never jumps), loop starts again, hold keeps the last frame."),
                io.Boolean.Input("continue_footage", default=DUB.continue_footage,
                                 tooltip="Speech shorter than the footage: on, the footage goes on as it is with "
                                         "its own sound; off, the video ends with the speech."),
                io.Combo.Input("blinks", options=list(BLINKS), default=DUB.blinks,
                               tooltip="Where the eyes' quick motion comes from: the speech's motion, or the "
                                       "footage's own blinks (needs the renderer, which measures which motion "
                                       "numbers move the eyes)."),
                io.Float.Input("head_strength", default=DUB.head, min=0.0, max=2.0, step=0.05,
                               tooltip="The footage's head motion: 1 as it moves; lower holds it nearer its "
                                       "average pose (the paste then sits less exactly on the footage's head)."),
                io.Float.Input("mouth_strength", default=DUB.mouth, min=0.0, max=2.0, step=0.05,
                               tooltip="The speech's mouth motion: 1 as sampled, lower calmer, higher livelier."),
                Renderer.Input("renderer", optional=True, tooltip="Needed only for blinks from the footage. "
                                                                  + RENDERER_TIP),
            ],
            outputs=[Motion.Output(display_name="motion"), io.Int.Output(display_name="frame_count"),
                     io.String.Output(display_name="info")],
        )

    @classmethod
    def execute(cls, footage, motion, extend=DUB.extend, continue_footage=DUB.continue_footage, blinks=DUB.blinks,
                head_strength=DUB.head, mouth_strength=DUB.mouth, renderer=None) -> io.NodeOutput:
        if not isinstance(footage, FollowedFace):
            raise AniTalkerError("footage must come from Follow Face")
        options = DubOptions(extend, bool(continue_footage), blinks, float(head_strength), float(mouth_strength))
        model = renderer.activate() if renderer is not None and blinks == "footage" else None
        dubbed = pipeline.dub_motion(footage, motion, options, model)
        return io.NodeOutput(dubbed, dubbed.num_frames, dubbed.note, ui={"text": [dubbed.note]})
