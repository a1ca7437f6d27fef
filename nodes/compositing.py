"""Deliverables for compositing: Save Frames (an image sequence with its matte, audio and sidecar) and Save ProRes
(a ProRes 4444 mov with the matte as alpha), both rendering Render Video's VIDEO batch by batch."""

from __future__ import annotations

import os
from fractions import Fraction
from typing import Any, Callable, Optional

import torch
from comfy_api.latest import io

from ..anitalker_core.errors import AniTalkerError
from ..anitalker_core.stages.video import OutputKind, image_pieces, write_pieces
from ..anitalker_core.video.frame_sequence import (DESCRIPTIONS, FRAME_FORMATS, MATTES, MAX_FIRST_FRAME,
                                                   FrameSequenceWriter, SequenceOptions)
from ..anitalker_core.video.video_render import OutputPixels, VideoRender
from ..anitalker_core.video.writers import ProResWriter, VideoWriter
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


def write_video(video: Any, make: Callable[[Optional[VideoRender], float], VideoWriter], kind: OutputKind,
                pixels: OutputPixels, node: Any) -> tuple[VideoWriter, str]:
    """The VIDEO written by the writer ``make(clip, fps)`` gives: Render Video's rendered batch by batch into
    ``pixels`` after its estimate (whose summary comes back), any other from its frames in memory. Returns the
    writer (closed) and the summary."""
    made: list[VideoWriter] = []

    def writers(clip: Optional[VideoRender] = None, fps: Optional[float] = None) -> list[VideoWriter]:
        made.append(make(clip, fps if fps is not None else clip.fps))
        return made

    if isinstance(video, StreamedVideo):
        run = video.render_into(writers, [kind], pixels, node)
        return made[0], "\n" + run.summary()
    images, audio, fps = _components(video)
    bar = shown.progress(int(images.shape[0]))
    write_pieces(image_pieces(images, callback=bar, preview=bar.preview), writers(fps=fps), audio)
    return made[0], ""


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
        if not isinstance(video, StreamedVideo) and options.matte != "none":
            raise AniTalkerError(NO_MATTE.format(what="matte to 'none'"))
        path, subfolder, name = folders.new_output_path(filename_prefix or "anitalker/frames")
        written, summary = write_video(
            video, lambda clip, fps: FrameSequenceWriter(path, fps=fps, options=options, name=name,
                                                         layout=clip.layout() if clip is not None else {}),
            options, options.pixels, cls)
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
        if not isinstance(video, StreamedVideo) and alpha:
            raise AniTalkerError(NO_MATTE.format(what="alpha off"))
        path, subfolder, _ = folders.new_output_path(filename_prefix or "anitalker/prores", "_.mov")
        written, summary = write_video(video, lambda clip, fps: ProResWriter(path, fps=fps, alpha=alpha), "mov",
                                       OutputPixels("uint16", matte=alpha, head_only=head_only), cls)
        info = (f"{written.frames_written} frames, ProRes 4444{' with alpha' if alpha else ''}"
                f"{' (head only)' if head_only else ''} in {_where(path, subfolder)}")
        return io.NodeOutput(ui={"text": [info + summary]})
