"""The main chain: portrait, audio features, variance control, diffusion sampler, motion extract, render."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..anitalker_core import pipeline
from ..anitalker_core.audio import tracks as tracks_mod
from ..anitalker_core.diffusion.ddim import DEFAULT_STEPS, timesteps
from ..anitalker_core.diffusion.start_noise import DEFAULT_SEED_MODE, SEED_MODES
from ..anitalker_core.errors import StepCountError
from ..anitalker_core.image.face_numbers import numbered_faces
from ..anitalker_core.image.paste_back import crop_matte
from ..anitalker_core.image.portrait_crop import CROP_MODES, DEFAULT_MARGIN
from ..anitalker_core.motion import control as control_mod
from ..anitalker_core.motion.control import CENTRE
from ..anitalker_core.stages import FrameRender, MotionSampling
from ..anitalker_core.types import FPS
from . import progress as shown
from .types import (CATEGORY_LOADERS, CATEGORY_MOTION, CATEGORY_RENDER, MOTION_TIP, PORTRAIT_TIP, RENDERER_TIP,
                    AudioEncoder, AudioFeatures, Control, Generator, Motion, Portrait, Renderer, audio_parts,
                    frames_mask, optional_text)


def to_comfy_image(chw_m11: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) in [-1,1] -> ComfyUI IMAGE (B,H,W,3) in 0..1 on the CPU."""
    return ((chw_m11.float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).contiguous()


KEYED = "Keyframes that set this value replace the slider."
SLIDERS = ("yaw", "pitch", "roll", "face_location", "face_scale")


class LoadPortrait(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerLoadPortrait",
            display_name="Load Portrait",
            category=CATEGORY_LOADERS,
            description="Finds the face, crops the head the way the model was trained (256x256) and encodes it "
                        "once for all frames. The crop is previewed on the node and is also an output.",
            inputs=[
                io.Image.Input("image", tooltip="Any size; alpha is filled with white. A batch uses its first image."),
                Renderer.Input("renderer", tooltip=RENDERER_TIP),
                io.Combo.Input("crop_mode", options=list(CROP_MODES), default="auto",
                               tooltip="auto: find the face and crop around it. full: the image is already a head "
                                       "crop (like the AniTalker demos). manual: use the box below."),
                io.Float.Input("margin", default=DEFAULT_MARGIN, min=0.0, max=3.0, step=0.05,
                               tooltip="auto only: room around the face. The default matches the training crops; more "
                                       "shows more hair and shoulders, but the face gets smaller."),
                io.Int.Input("box_x", default=0, min=-16384, max=16384, tooltip="manual only: left edge in pixels."),
                io.Int.Input("box_y", default=0, min=-16384, max=16384, tooltip="manual only: top edge in pixels."),
                io.Int.Input("box_size", default=512, min=8, max=16384, tooltip="manual only: side of the square."),
                # added after graphs were saved without it: optional, and last
                io.Int.Input("face", default=0, min=0, max=64, optional=True,
                             tooltip="auto only: which face. 0 = the largest; 1 = the leftmost, 2 = the second from "
                                     "the left, ... (the preview numbers the faces found). One face per Load "
                                     "Portrait: a conversation loads the picture once per speaker."),
            ],
            outputs=[Portrait.Output(display_name="portrait"), io.Image.Output(display_name="face_crop"),
                     io.String.Output(display_name="info")],
        )

    @classmethod
    def execute(cls, image, renderer, crop_mode="auto", margin=DEFAULT_MARGIN, box_x=0, box_y=0,
                box_size=512, face=0) -> io.NodeOutput:
        model = renderer.activate()
        portrait = pipeline.portrait_from_image(model, image, crop_mode=crop_mode, box=(box_x, box_y, box_size),
                                                margin=margin, face=face)
        crop, info = to_comfy_image(portrait.image), portrait.note or f"{crop_mode} crop ok"
        preview = crop
        if len(portrait.crop.faces) > 1:  # the picture with its faces numbered, beside the crop
            preview = torch.cat([crop, numbered_faces(image, portrait.crop, side=crop.shape[1])])
        return io.NodeOutput(portrait, crop, info, ui=shown.preview_ui(preview, info))


class AudioEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerAudioEncode",
            display_name="Audio Encode",
            category=CATEGORY_MOTION,
            description="Turns speech into the features the motion generator listens to. Any sample rate and "
                        f"channel count; the video gets {FPS} frames per second of audio.",
            inputs=[io.Audio.Input("audio", tooltip="The speech, e.g. from Load Audio; a batch uses its first clip."),
                    AudioEncoder.Input("audio_encoder", tooltip="From Load Audio Encoder: HuBERT for *_hubert "
                                                                  "generators, MFCC for *_mfcc ones.")],
            outputs=[AudioFeatures.Output(display_name="audio_features"),
                     io.Int.Output(display_name="frame_count"), io.String.Output(display_name="info")],
        )

    @classmethod
    def execute(cls, audio, audio_encoder) -> io.NodeOutput:
        waveform, sample_rate = audio_parts(audio)
        feats = pipeline.features_from_audio(audio_encoder, waveform, sample_rate, callback=shown.progress())
        info = f"{feats.duration_s:.2f} s of audio -> {feats.num_frames} frames at {FPS} fps"
        info = pipeline.join_notes(info, feats.note)
        return io.NodeOutput(feats, feats.num_frames, info, ui={"text": [info]})


class ConversationTracks(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerConversationTracks",
            display_name="Conversation Tracks",
            category=CATEGORY_MOTION,
            description="One voice track per speaker, all as long as the conversation, for a picture with several "
                        "talking faces: a stereo recording with one speaker per side is split into left and right; "
                        "two recordings are padded with silence to the longer one. Each face's motion is then "
                        "sampled from its own track, in step with the other's.",
            inputs=[io.Audio.Input("audio", tooltip="The conversation in stereo (speaker 1 left, speaker 2 right), "
                                                    "or speaker 1's own track when audio_2 is given."),
                    io.Audio.Input("audio_2", optional=True,
                                   tooltip="Speaker 2's own track. One mixed mono track cannot be split by voice: "
                                           "give each speaker's recording.")],
            outputs=[io.Audio.Output(display_name="speaker_1"), io.Audio.Output(display_name="speaker_2"),
                     io.String.Output(display_name="info")],
        )

    @classmethod
    def execute(cls, audio, audio_2=None) -> io.NodeOutput:
        first = audio_parts(audio)
        if audio_2 is None:
            tracks = tracks_mod.same_length(tracks_mod.split_stereo(*first))
            how = "stereo split: speaker 1 left, speaker 2 right"
        else:
            tracks = tracks_mod.same_length([first, audio_parts(audio_2)])
            how = "two tracks, the shorter padded with silence"
        speakers = [{"waveform": w[None], "sample_rate": r} for w, r in tracks]
        waveform, rate = tracks[0]
        info = f"{how}; {waveform.shape[-1] / rate:.2f} s each"
        return io.NodeOutput(*speakers, info, ui={"text": [info]})


class VarianceControl(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerVarianceControl",
            display_name="Variance Control",
            category=CATEGORY_MOTION,
            description="Head pose, face location and face scale for pose_only / full_control generators. "
                        "Connecting it makes the generator follow these values instead of guessing them from speech. "
                        "Keyframes, when given, drive every value they set; the sliders give the rest.",
            inputs=[
                io.Float.Input("yaw", default=0.0, min=-90.0, max=90.0, step=1.0,
                               tooltip="Turn left/right in degrees. 20 is a clear three-quarter turn; beyond "
                                       f"about 30 the face starts to distort. {KEYED}"),
                io.Float.Input("pitch", default=0.0, min=-90.0, max=90.0, step=1.0,
                               tooltip=f"Nod up/down in degrees; small values (5-15) look natural. {KEYED}"),
                io.Float.Input("roll", default=0.0, min=-90.0, max=90.0, step=1.0,
                               tooltip=f"Tilt the head sideways in degrees. {KEYED}"),
                io.Float.Input("face_location", default=CENTRE, min=0.0, max=1.0, step=0.01,
                               tooltip=f"full_control only: horizontal head position, {CENTRE} = centred. {KEYED}"),
                io.Float.Input("face_scale", default=CENTRE, min=0.0, max=1.0, step=0.01,
                               tooltip=f"full_control only: head size, {CENTRE} = as in the portrait. {KEYED}"),
                io.String.Input("keyframes", display_name="keyframes", default="", multiline=True, optional=True,
                                placeholder="keyframes (optional), one per line:\n0: yaw=0 pitch=0\n2s: yaw=20 pitch=5",
                                tooltip="Optional animation, one key per line: '0: yaw=0' then '2s: yaw=20 "
                                        "pitch=5' (frame number or seconds). Values glide between keys and hold "
                                        "after the last. A value set here replaces its slider; the node's info "
                                        "says which values the keyframes drive."),
            ],
            outputs=[Control.Output(display_name="control"), io.String.Output(display_name="info")],
        )

    @classmethod
    def execute(cls, yaw=0.0, pitch=0.0, roll=0.0, face_location=CENTRE, face_scale=CENTRE,
                keyframes="") -> io.NodeOutput:
        sliders = (yaw, pitch, roll, face_location, face_scale)
        control = control_mod.make_control(*sliders, optional_text(keyframes))
        info = pipeline.join_notes(control_mod.describe(control, sliders, SLIDERS), control.note)
        return io.NodeOutput(control, info, ui={"text": [info]})


class DiffusionSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerDiffusionSampler",
            display_name="Diffusion Motion Sampler",
            category=CATEGORY_MOTION,
            description="Generates the motion (20 numbers per frame) from speech with the diffusion motion "
                        "generator. Cheap next to rendering: try several seeds or takes.",
            inputs=[
                Generator.Input("generator", tooltip="From Load Motion Generator."),
                Portrait.Input("portrait", tooltip=PORTRAIT_TIP),
                AudioFeatures.Input("audio_features", tooltip="From Audio Encode, made with the encoder this "
                                                              "generator needs (HuBERT or MFCC)."),
                Control.Input("control", optional=True,
                              tooltip="Optional: follow this pose/location/scale. Without it they come from speech."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1, control_after_generate=True,
                             tooltip="Different seeds give different head movement and expressions."),
                io.Int.Input("steps", default=DEFAULT_STEPS, min=1, max=1000,
                             tooltip="Denoising steps. 50 is the official setting; 20-25 is nearly as good and "
                                     "twice as fast; 10 gets stiffer. Any count from 2 to 36 works, above that "
                                     "only counts an even stride over the 1000 training steps gives (40, 50, 100...)."),
                io.Combo.Input("seed_mode", options=list(SEED_MODES), default=DEFAULT_SEED_MODE,
                               tooltip="torch: fast and portable. official: the exact start noise of the official "
                                       "demo for this seed, to reproduce its results."),
                io.Int.Input("takes", default=1, min=1, max=16,
                             tooltip="Generate several takes at once (seeds seed, seed+1, ...); pick one with "
                                     "Select Take or render them all."),
            ],
            outputs=[Motion.Output(display_name="motion"), io.Int.Output(display_name="frame_count"),
                     io.Float.Output(display_name="fps"), io.String.Output(display_name="info")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, steps=DEFAULT_STEPS):
        """Only ``steps`` is named, so ComfyUI still checks the other inputs' ranges and choices itself; a linked
        ``steps`` (None here) is checked when the node runs."""
        if steps is None:
            return True
        try:
            timesteps(steps)
        except StepCountError as exc:
            return str(exc)
        return True

    @classmethod
    def execute(cls, generator, portrait, audio_features, control=None, seed=0, steps=DEFAULT_STEPS,
                seed_mode=DEFAULT_SEED_MODE, takes=1) -> io.NodeOutput:
        model = generator.activate()
        stage = MotionSampling(model, portrait, audio_features, control=control, seed=seed, steps=steps, takes=takes,
                               seed_mode=seed_mode)
        run = shown.estimated(stage, cls, generator)
        motion = stage.run(shown.progress(steps))
        info = pipeline.join_notes(f"{motion.num_takes} take(s) x {motion.num_frames} frames ({model.variant})",
                                   motion.note, run.summary())
        return io.NodeOutput(motion, motion.num_frames, float(motion.fps), info, ui={"text": [info]})


class MotionExtract(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerMotionExtract",
            display_name="Motion from Video",
            category=CATEGORY_MOTION,
            description="Reads the motion of a driving video (a batch of frames of one face, ideally cropped like "
                        "the portrait) so the portrait can mimic it.",
            inputs=[
                Renderer.Input("renderer", tooltip=RENDERER_TIP),
                io.Image.Input("driving_frames", tooltip="Video frames, e.g. from Load Video; 25 fps is native."),
                Portrait.Input("portrait", tooltip=PORTRAIT_TIP),
                io.Combo.Input("mode", options=["relative", "absolute"], default="relative",
                               tooltip="relative: transfer the change from the first driving frame, so the "
                                       "portrait keeps its own pose (recommended). absolute: copy the driving "
                                       "pose too."),
            ],
            outputs=[Motion.Output(display_name="motion"), io.Int.Output(display_name="frame_count")],
        )

    @classmethod
    def execute(cls, renderer, driving_frames, portrait, mode="relative") -> io.NodeOutput:
        model = renderer.activate()
        motion = pipeline.motion_from_video(model, driving_frames, portrait, relative=mode == "relative",
                                            callback=shown.progress(driving_frames.shape[0]))
        info = f"{motion.num_frames} frames of motion from the video ({mode})"
        return io.NodeOutput(motion, motion.num_frames, ui={"text": [info]})


class RenderFrames(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AniTalkerRenderFrames",
            display_name="Render Frames",
            category=CATEGORY_RENDER,
            description="Renders the motion into 256x256 frames of the portrait (IMAGE batch, 25 fps). Feed them "
                        "to an upscaler, Paste Back, Save Image or Create Video with the same audio.",
            inputs=[
                Renderer.Input("renderer", tooltip=RENDERER_TIP),
                Portrait.Input("portrait", tooltip=PORTRAIT_TIP),
                Motion.Input("motion", tooltip=MOTION_TIP),
                io.Int.Input("batch_size", display_name="batch_size (0 = auto)", default=0, min=0, max=512,
                             tooltip="Frames rendered at once. 0 = auto: 2 on a CPU, 64 on a GPU. Larger batches "
                                     "are faster on big GPUs and use more memory."),
                io.Int.Input("take", display_name="take (0 = first)", default=0, min=0, max=63,
                             tooltip="Which take to render when the sampler made several: 0 = the first "
                                     "(seed), 1 = the second (seed + 1), ..."),
            ],
            outputs=[io.Image.Output(display_name="frames"),
                     io.Mask.Output(display_name="matte",
                                    tooltip="The head mask the frames would be pasted back through (1 = the animated "
                                            "head), the same for every frame.")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, renderer, portrait, motion, batch_size=0, take=0) -> io.NodeOutput:
        model = renderer.activate()
        stage = FrameRender(model, portrait, pipeline.motion_take(motion, take), batch_size or None)
        run = shown.estimated(stage, cls, renderer)
        bar = shown.progress(motion.num_frames)
        images = stage.run(bar, bar.preview)
        info = f"{images.shape[0]} frames, take {take}\n{run.summary()}"
        return io.NodeOutput(images, frames_mask(crop_matte(images.shape[1], portrait.crop), images.shape[0]),
                             ui={"text": [info]})
