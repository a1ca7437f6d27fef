"""Render Video: the clip as ComfyUI's VIDEO, rendered, face-restored, upscaled, pasted back and encoded when it is
saved."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from typing import IO, Any, Callable, Optional, Sequence, Union

import torch
from comfy_api.latest import io

from ..anitalker_core import pipeline
from ..anitalker_core.errors import AniTalkerError
from ..anitalker_core.image.face_restore import RestoreOptions
from ..anitalker_core.image.paste_back import PasteOptions
from ..anitalker_core.image.upscale import split_models
from ..anitalker_core.stages import VideoWrite
from ..anitalker_core.stages.estimate import RunEstimate
from ..anitalker_core.stages.video import OutputKind
from ..anitalker_core.audio.tracks import mix
from ..anitalker_core.video.conversation import onto
from ..anitalker_core.video.video_render import OutputPixels, VideoRender
from ..anitalker_core.video.writers import Mp4Writer, VideoWriter
from . import model_handle as models
from . import progress as shown
from .types import (CATEGORY_RENDER, FACE_MODELS, MOTION_TIP, PASTE, PORTRAIT_TIP, RENDERER_TIP, RESTORE, Motion,
                    Portrait, Renderer, VideoInput, paste_back_inputs, restore_inputs, video_components)

FORMATS = ("auto", "mp4")
CODECS = ("auto", "h264")


class StreamedVideo(VideoInput):
    """A VIDEO whose frames do not exist until it is saved.

    ``save_to`` (what core Save Video and most consumers call) renders batch by batch into the encoder, so
    memory stays one batch at the output size for any length; the pack's Save Frames and Save ProRes render it
    the same way into their files (``render_into``), with the matte each frame is pasted through. The models are
    taken through ComfyUI's model management at that moment, since they may have been offloaded after Render
    Video ran. ``get_components`` (asked by nodes that want every frame as an IMAGE batch) has to render the whole
    clip into memory.

    A conversation's VIDEO (Render Video given another one's VIDEO as ``original``) holds, in ``under``, the
    videos of the faces beneath its own, in the order of ``clip.beneath``: their models are readied with its own.
    """

    def __init__(self, renderer: models.ModelHandle, clip: VideoRender, audio: Optional[dict],
                 upscale_model: Any = None, face_model: Any = None, restore: RestoreOptions = RESTORE,
                 under: tuple["StreamedVideo", ...] = ()) -> None:
        self.renderer, self.clip, self.audio, self.upscale_model = renderer, clip, audio, upscale_model
        self.face_model, self.restore, self.under = face_model, restore, under

    def get_dimensions(self) -> tuple[int, int]:
        if self.clip.original is None and (self.upscale_model is not None or self.face_model is not None):
            side = models.output_side(self.clip.renderer.size, self.upscale_model, self.face_model)  # not loaded
            return side, side
        return self.clip.size

    def get_duration(self) -> float:
        return self.clip.duration_s

    def get_frame_count(self) -> int:
        return self.clip.num_frames

    def get_frame_rate(self) -> Fraction:
        return Fraction(self.clip.fps).limit_denominator(1000)

    def get_container_format(self) -> str:
        return "mp4"

    def ready_clip(self) -> VideoRender:
        """The clip (and the faces beneath it) with their models on the execution device (ComfyUI may have offloaded
        them since); ``release`` the upscale and face models after the work. Either input may hold either kind of
        model."""
        beneath = tuple(video._ready(face) for video, face in zip(self.under, self.clip.beneath))
        return replace(self._ready(self.clip), beneath=beneath)

    def _ready(self, clip: VideoRender) -> VideoRender:
        model = self.renderer.activate()
        inputs = (("upscale_model", self.upscale_model), ("face_model", self.face_model))
        given = [(name, models.upscaler(d, self.renderer.device, name)) for name, d in inputs if d is not None]
        restorer, upscaler = split_models(given)
        restorer = restorer.with_options(self.restore) if restorer is not None else None
        return replace(clip, renderer=model, upscaler=upscaler, restorer=restorer)

    def release(self) -> None:
        models.release_upscaler(self.upscale_model)
        models.release_upscaler(self.face_model)
        for video in self.under:
            video.release()

    def _audio(self) -> Optional[tuple[torch.Tensor, int]]:
        return (self.audio["waveform"], int(self.audio["sample_rate"])) if self.audio is not None else None

    def render_into(self, writers: Callable[[VideoRender], list[VideoWriter]], kinds: Sequence[OutputKind],
                    pixels: OutputPixels, node: Any) -> RunEstimate:
        """Estimate, then render the clip with ``pixels`` into the writers made for it (after the estimate, so a
        refused run leaves nothing behind), with progress, the live preview and Cancel."""
        bar = shown.progress(self.clip.num_frames)
        try:
            clip = replace(self.ready_clip(), pixels=pixels).check()
            stage = VideoWrite(clip, kinds)
            run = shown.estimated(stage, node, self.renderer)
            stage.run(writers(clip), audio=self._audio(), callback=bar, preview=bar.preview)
        finally:
            models.release_upscaler(self.upscale_model)
            for video in self.under:
                video.release()
        return run

    def save_to(self, path: Union[str, IO[bytes]], format: Any = "auto", codec: Any = "auto",
                metadata: Optional[dict] = None) -> None:
        if str(getattr(format, "value", format)) not in FORMATS or str(getattr(codec, "value", codec)) not in CODECS:
            raise AniTalkerError(f"AniTalker videos are written as H.264 mp4; choose format auto or mp4 and codec "
                                 f"auto or h264 (got {format} / {codec})")
        bar = shown.progress(self.clip.num_frames)
        try:
            clip = self.ready_clip()
            VideoWrite(clip).run([Mp4Writer(path, fps=round(clip.fps), metadata=metadata)], audio=self._audio(),
                                 callback=bar, preview=bar.preview)
        finally:
            self.release()

    def get_components(self):
        bar = shown.progress(self.clip.num_frames)
        try:
            clip = self.ready_clip()
            w, h = clip.size
            images = torch.empty((clip.num_frames, h, w, 3), dtype=torch.float32)
            done = 0
            for frames in VideoWrite(clip).pieces(callback=bar, preview=bar.preview):
                images[done: done + len(frames)] = torch.from_numpy(frames).float().div_(255)
                done += len(frames)
        finally:
            self.release()
        return video_components(images, self.audio, self.get_frame_rate())


def mixed_audio(earlier: Optional[dict], audio: Optional[dict]) -> Optional[dict]:
    """A conversation's sound: the earlier faces' audio and this one's, mixed; either alone when the other is
    missing."""
    if earlier is None or audio is None:
        return audio if earlier is None else earlier
    waveform, rate = mix([(a["waveform"], int(a["sample_rate"])) for a in (earlier, audio)])
    return {"waveform": waveform[None], "sample_rate": rate}


class RenderVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerRenderVideo",
            display_name="Render Video",
            category=CATEGORY_RENDER,
            description="Renders the motion into a VIDEO (with the audio), optionally with the face restored "
                        "(GFPGAN: a sharp 512x512 face), upscaled and pasted back into the full-size picture. "
                        "Nothing is rendered until the video is saved: then it is rendered, restored, upscaled, "
                        "pasted and encoded batch by batch, so any length at any resolution fits in the memory of "
                        "one batch.",
            inputs=[
                Renderer.Input("renderer", tooltip=RENDERER_TIP),
                Portrait.Input("portrait", tooltip=PORTRAIT_TIP),
                Motion.Input("motion", tooltip=MOTION_TIP),
                io.Int.Input("take", default=0, min=0, max=63, tooltip="Which take to render (0 = the first)."),
                io.Audio.Input("audio", optional=True, tooltip="The speech, muxed in sync (cut to the video)."),
                # IMAGE since the first release; a VIDEO too since 0.4.0 (saved links to an IMAGE still fit)
                io.MultiType.Input(
                    io.Image.Input("original", optional=True,
                                   tooltip="The picture given to Load Portrait: each frame is pasted back into it at "
                                           "its full size. Or another Render Video's VIDEO of the same picture: this "
                                           "face talks in its frames too (a conversation; each face keeps its own "
                                           "pixels). Leave empty for the 256x256 (or upscaled) head crop."),
                    types=[io.Video]),
                io.UpscaleModel.Input("upscale_model", optional=True,
                                      tooltip="Applied to each batch of 256x256 frames (to the restored faces when "
                                              "a face model is given) before paste back, e.g. RealESRGAN_x2 from "
                                              "Load Upscale Model. A face model here works as face_model."),
                *paste_back_inputs(),
                io.Int.Input("batch_size", default=0, min=0, max=512,
                             tooltip="Frames rendered at once (0 = auto: 2 on CPU, 64 on GPU)."),
                # added after graphs were saved without them: optional, and last, so saved widget values keep
                # their places
                io.UpscaleModel.Input("face_model", optional=True,
                                      tooltip="A face-restoration model: each 256x256 head becomes a sharp 512x512 "
                                              f"face before any upscale and paste back. {FACE_MODELS}."),
                *restore_inputs(optional=True),
            ],
            outputs=[io.Video.Output(display_name="video",
                                     tooltip="Rendered when saved (Save Video). A node that asks for all frames "
                                             "at once (Get Video Components) renders the whole clip into memory.")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, renderer, portrait, motion, take=0, audio=None, original=None, upscale_model=None,
                feather=PASTE.feather, color_match=PASTE.color_match, mask=PASTE.mask, batch_size=0,
                face_model=None, restore_strength=RESTORE.strength,
                codeformer_fidelity=RESTORE.fidelity) -> io.NodeOutput:
        if audio is not None and (not isinstance(audio, dict) or "waveform" not in audio):
            raise AniTalkerError("the audio input is not ComfyUI AUDIO; connect a Load Audio node")
        earlier = original if isinstance(original, VideoInput) else None
        if earlier is not None and not isinstance(earlier, StreamedVideo):
            raise AniTalkerError("original takes the picture (IMAGE) or the VIDEO of another Render Video of the same "
                                 f"picture (a conversation); this {type(earlier).__name__} is neither: connect the "
                                 "picture, or Get Video Components' images for a short video")
        clip = VideoRender(renderer.model, portrait, pipeline.motion_take(motion, take), fps=motion.fps,
                           original=None if earlier is not None else original,
                           paste=PasteOptions(feather, mask, color_match), batch_size=batch_size or None)
        under: tuple[StreamedVideo, ...] = ()
        if earlier is not None:
            clip, under = onto(earlier.clip, clip), (*earlier.under, earlier)
            audio = mixed_audio(earlier.audio, audio)
        clip = clip.check()
        restore = RestoreOptions(restore_strength, codeformer_fidelity).check()
        video = StreamedVideo(renderer, clip, audio, upscale_model, face_model, restore, under)
        try:  # the estimate of the render that saving the video will run: time, and the memory of one batch
            run = shown.estimated(VideoWrite(video.ready_clip()), cls, renderer)
        finally:
            video.release()
        w, h = video.get_dimensions()
        faces = f", {len(clip.beneath) + 1} faces" if clip.beneath else ""
        info = (f"{clip.num_frames} frames ({clip.duration_s:.2f} s), {w}x{h}{faces}; rendered when the video is "
                "saved\n")
        return io.NodeOutput(video, ui={"text": [info + run.summary()]})
