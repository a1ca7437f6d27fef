"""Render Video: the clip as ComfyUI's VIDEO, rendered, face-restored, upscaled, pasted back and encoded when it is
saved."""

from __future__ import annotations

import os
import weakref
from dataclasses import replace
from fractions import Fraction
from typing import IO, Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from comfy_api.latest import io

from ..anitalker_core import pipeline
from ..anitalker_core.audio import tracks
from ..anitalker_core.errors import AniTalkerError
from ..anitalker_core.image.face_restore import RestoreOptions
from ..anitalker_core.image.paste_back import PasteOptions
from ..anitalker_core.image.pixels import convert_samples, to_samples
from ..anitalker_core.image.upscale import split_models
from ..anitalker_core.stages import VideoWrite
from ..anitalker_core.stages.estimate import RunEstimate
from ..anitalker_core.stages.video import OutputKind, frames_batch
from ..anitalker_core.video.clip_edits import Crop, even_crop, frame_window
from ..anitalker_core.video.conversation import Scene, link
from ..anitalker_core.video.encoding import VideoEncoding
from ..anitalker_core.video.video_render import OutputPixels, VideoRender
from ..anitalker_core.video.writers import EncodedVideoWriter, VideoWriter, frame_rate
from . import folders
from . import model_handle as models
from . import progress as shown
from .dubbing import DUB, footage_of
from .fallbacks import ignored
from .types import (CATEGORY_RENDER, FACE_MODELS, MOTION_TIP, PASTE, PORTRAIT_TIP, RENDERER_TIP, RESTORE, Motion,
                    Portrait, Renderer, VideoInput, audio_track, audio_value, paste_back_inputs, restore_inputs,
                    video_components)

class StreamedVideo(VideoInput):
    """A VIDEO whose frames do not exist until it is saved.

    ``save_to`` (what core Save Video and most consumers call) renders batch by batch into the encoder, so
    memory stays one batch at the output size for any length; the pack's Save Frames and Save ProRes render it
    the same way into their files (``render_into``), with the matte each frame is pasted through. The models are
    taken through ComfyUI's model management at that moment, since they may have been offloaded after Render
    Video ran. ``get_components`` (asked by nodes that want every frame as an IMAGE batch) has to render the whole
    clip into memory. Trimmed, cropped and resized versions (``as_trimmed``, ``as_cropped``, ``as_resized``, which
    ComfyUI's video nodes call) are VIDEOs of the same kind: they render only the frames they show, batch by batch,
    and cut or scale each finished batch.

    A conversation's VIDEO (Render Video given another one's VIDEO as ``original``) holds, in ``under``, the
    videos of the faces beneath its own, in the order of ``clip.beneath``: their models are readied with its own.
    """

    def __init__(self, renderer: models.ModelHandle, clip: VideoRender, audio: Optional[dict],
                 upscale_model: Any = None, face_model: Any = None, restore: RestoreOptions = RESTORE,
                 under: tuple["StreamedVideo", ...] = ()) -> None:
        self.renderer, self.clip, self.audio, self.upscale_model = renderer, clip, audio, upscale_model
        self.face_model, self.restore, self.under = face_model, restore, under
        self._stream: Optional[str] = None

    def _with(self, clip: VideoRender, audio: Optional[dict]) -> "StreamedVideo":
        return StreamedVideo(self.renderer, clip, audio, self.upscale_model, self.face_model, self.restore,
                             self.under)

    def get_dimensions(self) -> tuple[int, int]:
        if self.clip.original is None and (self.upscale_model is not None or self.face_model is not None):
            # the models are not loaded yet: the sizes they give, through the clip's own crop and resize
            side = models.output_side(self.clip.renderer.size, self.upscale_model, self.face_model)
            width, height = side, side
            for op in self.clip.reshape:
                width, height = op.size(width, height)
            return width, height
        return self.clip.size

    def get_duration(self) -> float:
        return self.clip.duration_s

    def get_frame_count(self) -> int:
        return self.clip.num_frames

    def get_frame_rate(self) -> Fraction:
        return frame_rate(self.clip.fps)

    def get_bit_depth(self) -> int:
        return 8

    def get_color_space(self) -> str:
        return "sRGB"

    def get_container_format(self) -> str:
        return "mp4"

    def get_active_trim_window(self) -> tuple[float, float]:
        """No window is left to apply: a trimmed clip renders (and streams) only its own frames."""
        return 0.0, 0.0

    def has_pending_frame_edits(self) -> bool:
        return False

    def as_trimmed(self, start_time: Optional[float] = None, duration: Optional[float] = None,
                   strict_duration: bool = False) -> Optional["StreamedVideo"]:
        """The frames shown from ``start_time`` (seconds; negative: from the end) for ``duration`` (0 or None: to
        the end), with the audio of that window; None when no frame is shown or, with ``strict_duration``, when
        the clip ends before ``duration``. Nothing renders now."""
        window = frame_window(self.clip.num_frames, self.clip.fps, start_time, duration, strict_duration)
        if window is None:
            return None
        first, count = window
        audio = audio_track(self.audio)
        if audio is not None:
            fps = self.clip.fps
            audio = (tracks.window(audio[0], audio[1], first / fps, count / fps), audio[1])
            audio = audio if audio[0].shape[-1] else None  # the recording ended before the window
        return self._with(self.clip.trimmed(first, count), audio_value(audio))

    def as_cropped(self, x: int = 0, y: int = 0, width: int = 0, height: int = 0) -> "StreamedVideo":
        """The rectangle cut out of every frame as it is rendered (clamped, even origin and sides, as ComfyUI's
        videos crop); an empty or whole-frame rectangle gives this video."""
        crop = even_crop(x, y, width, height, *self.get_dimensions())
        return self if crop is None else self._with(self.clip.reshaped(crop), self.audio)

    def as_resized(self, width: int, height: int, upscale_method: str, crop: str = "disabled",
                   post_crop: Optional[tuple[int, int, int, int]] = None) -> "StreamedVideo":
        """Every frame scaled as ComfyUI's image resize scales an IMAGE (then cut to ``post_crop`` exactly), as
        it is rendered."""
        clip = self.clip.reshaped(ComfyResize(int(width), int(height), str(upscale_method), str(crop)))
        if post_crop is not None:
            clip = clip.reshaped(Crop(*(int(v) for v in post_crop)))
        return self._with(clip, self.audio)

    def get_stream_source(self) -> str:
        """The clip rendered once into an mp4 in ComfyUI's temporary folder (removed with this video), never into
        memory."""
        if self._stream is None or not os.path.isfile(self._stream):
            path = folders.temp_video_path(".mp4")
            self.save_to(path)
            self._stream = path
            weakref.finalize(self, _remove, path)
        return self._stream

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

    def render_into(self, writers: Callable[[VideoRender], list[VideoWriter]], kinds: Sequence[OutputKind],
                    pixels: OutputPixels, node: Any) -> RunEstimate:
        """Estimate, then render the clip with ``pixels`` into the writers made for it (after the estimate, so a
        refused run leaves nothing behind), with progress, the live preview and Cancel."""
        bar = shown.progress(self.clip.num_frames)
        try:
            clip = replace(self.ready_clip(), pixels=pixels).check()
            stage = VideoWrite(clip, kinds)
            run = shown.estimated(stage, node, self.renderer)
            stage.run(writers(clip), audio=audio_track(self.audio), callback=bar, preview=bar.preview)
        finally:
            self.release()
        return run

    def save_to(self, path: Union[str, IO[bytes]], format: Any = "auto", codec: Any = "auto",
                metadata: Optional[dict] = None, bit_depth: Optional[int] = None, crf: Optional[float] = None,
                color_space: Optional[str] = None, preset: Optional[str] = None, **later: Any) -> None:
        """Rendered batch by batch into the encoder: H.264 or AV1, 8 or 10 bits, in mp4, mkv or WebM, at the
        quality (``crf``) and speed (``preset``, H.264) asked for, tagged BT.709. Keywords a later ComfyUI adds are
        ignored (said once in the log) rather than failing the save."""
        if later:
            ignored("save_to", later)
        encoding = VideoEncoding.requested(path, format, codec, bit_depth, crf, preset, color_space)
        bar = shown.progress(self.clip.num_frames)
        try:
            clip = replace(self.ready_clip(), pixels=OutputPixels(encoding.samples))
            writer = EncodedVideoWriter(path, fps=clip.fps, encoding=encoding, metadata=metadata)
            VideoWrite(clip).run([writer], audio=audio_track(self.audio), callback=bar, preview=bar.preview)
        finally:
            self.release()

    def get_components(self):
        bar = shown.progress(self.clip.num_frames)
        try:
            images = frames_batch(VideoWrite(self.ready_clip()), callback=bar, preview=bar.preview)
        finally:
            self.release()
        return video_components(images, self.audio, self.get_frame_rate())


class ComfyResize:
    """Frames scaled by ComfyUI's own image resize (``comfy.utils.common_upscale``), so a resized VIDEO has the
    pixels its Resize Image node would give the same frames."""

    def __init__(self, width: int, height: int, method: str, crop: str = "disabled") -> None:
        self.width, self.height, self.method, self.crop = width, height, method, crop

    def size(self, width: int, height: int) -> tuple[int, int]:
        return self.width, self.height

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        import comfy.utils

        kind = samples.dtype.name
        frames = torch.from_numpy(convert_samples(samples, "float32")).movedim(-1, 1)
        scaled = comfy.utils.common_upscale(frames, self.width, self.height, self.method, self.crop)
        return to_samples(scaled.movedim(1, -1), kind)


def _remove(path: str) -> None:
    if os.path.isfile(path):
        os.remove(path)


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
                                           "pixels). Or footage (Load Video) with Dub Motion's motion: each frame is "
                                           "pasted into its footage frame where the face is (a dub). Leave empty for "
                                           "the 256x256 (or upscaled) head crop."),
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
                io.Float.Input("footage_audio", default=DUB.footage_audio, min=0.0, max=1.0, step=0.05, optional=True,
                               tooltip="A dub: the footage's own sound mixed under the speech at this level (0 "
                                       "replaces it with the speech, 1 keeps it at full level)."),
            ],
            outputs=[io.Video.Output(display_name="video",
                                     tooltip="Rendered when saved (Save Video). A node that asks for all frames "
                                             "at once (Get Video Components) renders the whole clip into memory.")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, renderer, portrait, motion, take=0, audio=None, original=None, upscale_model=None,
                feather=PASTE.feather, color_match=PASTE.color_match, mask=PASTE.mask, batch_size=0,
                face_model=None, restore_strength=RESTORE.strength, codeformer_fidelity=RESTORE.fidelity,
                footage_audio=DUB.footage_audio) -> io.NodeOutput:
        if audio is not None and (not isinstance(audio, dict) or "waveform" not in audio):
            raise AniTalkerError("the audio input is not ComfyUI AUDIO; connect a Load Audio node")
        video_in = original if isinstance(original, VideoInput) else None
        earlier = video_in if isinstance(video_in, StreamedVideo) else None
        footage = footage_of(video_in) if video_in is not None and earlier is None else None
        if footage is not None and motion.shot is None:
            raise AniTalkerError("this original is footage (a VIDEO that Render Video did not make): dub it with "
                                 "Follow Face and Dub Motion and connect Dub Motion's motion, or connect the picture "
                                 "(IMAGE) the portrait was loaded from")
        clip = VideoRender(renderer.model, portrait, pipeline.motion_take(motion, take), fps=motion.fps,
                           original=None if video_in is not None else original,
                           paste=PasteOptions(feather, mask, color_match), batch_size=batch_size or None,
                           footage=footage, shot=motion.shot if footage is not None else None)
        under: tuple[StreamedVideo, ...] = ()
        if earlier is not None:
            scene = link(Scene(earlier.clip, audio_track(earlier.audio)), clip, audio_track(audio))
            clip, audio, under = scene.clip, audio_value(scene.audio), (*earlier.under, earlier)
        if footage is not None and audio is not None:
            shot = motion.shot
            own = footage.audio() if footage_audio or shot.speech_frames < shot.num_frames else None
            audio = audio_value(tracks.dub_track(audio_track(audio), own, shot.frames, shot.fps, shot.speech_frames,
                                                 float(footage_audio)))
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
