"""Deliverables for compositing: Save Frames (an image sequence with its matte, audio and sidecar) and Save ProRes
(a ProRes 4444 mov with the matte as alpha), both rendering Render Video's VIDEO batch by batch."""

from __future__ import annotations

import os
from fractions import Fraction
from typing import Any, Optional

import torch
from comfy_api.latest import io

from ..anitalker_core.errors import AniTalkerError
from ..anitalker_core.stages.video import image_pieces, write_pieces
from ..anitalker_core.video.frame_sequence import (DESCRIPTIONS, FRAME_FORMATS, MATTES, MAX_FIRST_FRAME,
                                                   FrameSequenceWriter, SequenceOptions)
from ..anitalker_core.video.video_render import OutputPixels
from ..anitalker_core.video.writers import ProResWriter
from . import folders
from . import progress as shown
from .types import CATEGORY_RENDER
from .video import StreamedVideo

SEQUENCE = SequenceOptions()
NO_MATTE = ("this VIDEO carries no matte: only Render Video's VIDEO has the head's matte (and the head alone); "
            "connect Render Video, or set {what}")


def _components(video: Any) -> tuple[torch.Tensor, Optional[tuple[torch.Tensor, int]], float]:
    """Any other VIDEO: its frames in memory (that is how ComfyUI's VIDEO gives them), its audio and rate."""
    if not hasattr(video, "get_components"):
        raise AniTalkerError(f"the video input is not a ComfyUI VIDEO but {type(video).__name__}; connect Render "
                             "Video or a Load Video node")
    parts = video.get_components()
    audio = parts.audio
    sound = (audio["waveform"], int(audio["sample_rate"])) if isinstance(audio, dict) else None
    return parts.images, sound, float(Fraction(parts.frame_rate))


def _where(path: str, subfolder: str) -> str:
    return "/".join(p for p in ("output", subfolder, os.path.basename(path)) if p)


class SaveFrames(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerSaveFrames", display_name="Save Frames", category=CATEGORY_RENDER,
            description="Writes the video as numbered images for compositing, into output/<prefix>_<counter>/: "
                        "8- or 16-bit PNG, half-float EXR or JPEG, the head's matte as alpha or as its own images, "
                        "the audio as audio.wav and sequence.json (rate, numbering, size, where the head sits). "
                        "Render Video's VIDEO is rendered batch by batch, so any length fits in the memory of "
                        "one batch; the folder appears only when complete.",
            inputs=[
                io.Video.Input("video", tooltip="Render Video's VIDEO (rendered now, with the head's matte), or any "
                                                "other VIDEO (its frames are taken into memory; no matte)."),
                io.String.Input("filename_prefix", default="anitalker/frames",
                                tooltip="The folder output/<prefix>_<counter>/; its files are <name>_<number>.<ext> "
                                        "after the prefix's last part."),
                io.Combo.Input("format", options=list(FRAME_FORMATS), default=SEQUENCE.format,
                               tooltip="; ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items()) + ". 16-bit PNG and "
                                       "EXR keep the renderer's float precision (the picture's own pixels stay as "
                                       "loaded)."),
                io.Combo.Input("matte", options=list(MATTES), default=SEQUENCE.matte,
                               tooltip="The soft mask each frame is pasted through (1 = the animated head). alpha: "
                                       "the images' alpha channel (png, png16, exr). separate: matte_<number>.png "
                                       "beside them."),
                io.Int.Input("first_frame", default=SEQUENCE.first_frame, min=0, max=MAX_FIRST_FRAME,
                             tooltip="Number of the first image (compositors often start at 1001)."),
                io.Boolean.Input("head_only", default=SEQUENCE.head_only,
                                 tooltip="The rendered head alone over transparency, without the picture (needs a "
                                         "matte): lay it over the original through its alpha."),
            ],
            outputs=[],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, video, filename_prefix="anitalker/frames", format=SEQUENCE.format, matte=SEQUENCE.matte,
                first_frame=SEQUENCE.first_frame, head_only=SEQUENCE.head_only) -> io.NodeOutput:
        options = SequenceOptions(format, matte, int(first_frame), bool(head_only)).check()
        streamed = isinstance(video, StreamedVideo)
        if not streamed and options.matte != "none":
            raise AniTalkerError(NO_MATTE.format(what="matte to 'none'"))
        path, subfolder, name = folders.new_output_path(filename_prefix or "anitalker/frames")
        made: list[FrameSequenceWriter] = []

        def writers(clip=None, fps=None):
            layout = clip.layout() if clip is not None else {}
            made.append(FrameSequenceWriter(path, fps=fps or clip.fps, options=options, name=name, layout=layout))
            return made

        summary = ""
        if streamed:
            summary = "\n" + video.render_into(writers, [options], options.pixels, cls).summary()
        else:
            images, audio, fps = _components(video)
            bar = shown.progress(int(images.shape[0]))
            write_pieces(image_pieces(images, callback=bar, preview=bar.preview), writers(fps=fps), audio)
        written = made[0]
        info = (f"{written.frames_written} frames ({DESCRIPTIONS[options.format]}"
                f"{', matte ' + options.matte if options.matte != 'none' else ''}"
                f"{', head only' if options.head_only else ''}) numbered from {options.first_frame}"
                f"{' + audio.wav' if written.audio else ''} in {_where(path, subfolder)}")
        return io.NodeOutput(ui={"text": [info + summary]})


class SaveProRes(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerSaveProRes", display_name="Save ProRes 4444", category=CATEGORY_RENDER,
            description="Writes the video as Apple ProRes 4444 in a .mov (10-bit 4:4:4, the audio as PCM), with the "
                        "head's matte as its alpha channel: the file compositing and editing software imports "
                        "directly. Render Video's VIDEO is rendered batch by batch; the file appears only when "
                        "complete.",
            inputs=[
                io.Video.Input("video", tooltip="Render Video's VIDEO (with the head's matte), or any other VIDEO "
                                                "(its frames in memory; no alpha)."),
                io.String.Input("filename_prefix", default="anitalker/prores",
                                tooltip="The file output/<prefix>_<counter>_.mov."),
                io.Boolean.Input("alpha", default=True,
                                 tooltip="The soft mask each frame is pasted through (1 = the animated head) as the "
                                         "alpha channel, straight (colours not premultiplied)."),
                io.Boolean.Input("head_only", default=False,
                                 tooltip="The rendered head alone over transparency, without the picture (needs "
                                         "alpha)."),
            ],
            outputs=[],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, video, filename_prefix="anitalker/prores", alpha=True, head_only=False) -> io.NodeOutput:
        if head_only and not alpha:
            raise AniTalkerError("head only needs the alpha channel to say where the head is: turn alpha on")
        streamed = isinstance(video, StreamedVideo)
        if not streamed and alpha:
            raise AniTalkerError(NO_MATTE.format(what="alpha off"))
        path, subfolder, _ = folders.new_output_path(filename_prefix or "anitalker/prores", "_.mov")
        made: list[ProResWriter] = []

        def writers(clip=None, fps=None):
            made.append(ProResWriter(path, fps=fps or clip.fps, alpha=alpha))
            return made

        summary = ""
        if streamed:
            pixels = OutputPixels("uint16", matte=alpha, head_only=head_only)
            summary = "\n" + video.render_into(writers, ["mov"], pixels, cls).summary()
        else:
            images, audio, fps = _components(video)
            bar = shown.progress(int(images.shape[0]))
            write_pieces(image_pieces(images, callback=bar, preview=bar.preview), writers(fps=fps), audio)
        info = (f"{made[0].frames_written} frames, ProRes 4444{' with alpha' if alpha else ''}"
                f"{' (head only)' if head_only else ''} in {_where(path, subfolder)}")
        return io.NodeOutput(ui={"text": [info + summary]})
