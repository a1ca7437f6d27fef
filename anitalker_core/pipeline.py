"""The AniTalker inference pipeline: the steps one by one, and the whole way from a picture and a recording to a
video (``Animation``).

portrait -> motion encoder (once) ; speech -> audio features ; (portrait, features, control) -> diffusion
motion generator -> motion latents (-> edits, calm pauses) ; (portrait, latents) -> warp renderer -> frames
(-> face restore, upscale, paste back into the picture -> video). The ComfyUI nodes call the steps one node each;
the headless command runs an ``Animation``.
"""

from __future__ import annotations

import gc
from dataclasses import replace
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from .audio.tracks import same_length
from .audio.voice_activity import activity_for
from .diffusion.ddim import DEFAULT_STEPS
from .diffusion.start_noise import DEFAULT_SEED_MODE
from .errors import AniTalkerError
from .image.face_restore import FaceRestorer
from .image.portrait_crop import crop_portrait
from .image.upscale import Upscaler
from .models.motion_autoencoder import MotionAutoencoder
from .models.motion_generator import MotionGenerator
from .motion.calm_silence import calm_silence
from .motion.dub import DubOptions, dub_latents, footage_order, resample_latents, speech_frames
from .options import ClipOptions
from .stages.estimate import RunEstimate, Step, run_estimate
from .stages.features import SpeechEncoder, SpeechFeatures
from .stages.footage import FollowedFace
from .stages.frames import FrameRender
from .stages.sampling import MotionSampling, sampling_step
from .stages.video import OutputKind, VideoWrite, stand_in_latents
from .types import (FPS, IMAGE_SIZE, AudioFeatures, Motion, PortraitCode, PreviewCallback, ProgressCallback, Shot,
                    VarianceControl, check_motion)
from .video.conversation import Scene, link
from .video.face_regions import eye_share
from .video.footage import Footage
from .video.renderer import encode_portrait, extract_motion, model_device
from .video.video_render import OutputPixels, VideoRender


def join_notes(*notes: str) -> str:
    """User-facing notes from several steps, one per line, empty ones dropped."""
    return "\n".join(n for n in notes if n)


def portrait_from_image(
    renderer: MotionAutoencoder,
    image: torch.Tensor,
    crop_mode: str = "auto",
    box: Optional[tuple[int, int, int]] = None,
    margin: Optional[float] = None,
    face: int = 0,
) -> PortraitCode:
    """Find and crop the head like the training data, then encode it once for all frames to come.

    A batch of images uses its first (the note says so). ``face``: 0 the largest, 1 the leftmost, 2 the next..."""
    crop, crop_box, note = crop_portrait(image, mode=crop_mode, box=box, margin=margin, face=face)
    return encode_portrait(renderer, crop, crop=crop_box, note=note)


def features_from_audio(encoder: SpeechEncoder, waveform: torch.Tensor, sample_rate: int,
                        callback: Optional[ProgressCallback] = None) -> AudioFeatures:
    """Any waveform at any rate and channel count -> the features the motion generator was trained on."""
    return SpeechFeatures(encoder, waveform, sample_rate).run(callback)


def generate_motion(generator: MotionGenerator, portrait: PortraitCode, audio: AudioFeatures,
                    control: Optional[VarianceControl] = None, seed: int = 0, steps: int = DEFAULT_STEPS,
                    takes: int = 1, seed_mode: str = DEFAULT_SEED_MODE,
                    callback: Optional[ProgressCallback] = None) -> Motion:
    """Diffusion motion generation: speech (+ optional pose/location/scale control) -> motion latents.

    The Motion also carries the pose, location and scale the variance adapter used for each take."""
    return MotionSampling(generator, portrait, audio, control, seed, steps, takes, seed_mode).run(callback)


def frames_to_model_input(frames: torch.Tensor) -> torch.Tensor:
    """(T,H,W,C) 0..1 -> (T,3,IMAGE_SIZE,IMAGE_SIZE) in [-1,1], resized with antialiasing when needed."""
    if not isinstance(frames, torch.Tensor):
        raise AniTalkerError(f"expected a batch of video frames (T,H,W,C), got {type(frames).__name__}")
    if frames.ndim == 3:
        frames = frames.unsqueeze(0)
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise AniTalkerError(f"expected a batch of video frames (T,H,W,C), got shape {tuple(frames.shape)}")
    x = frames[..., :3].permute(0, 3, 1, 2).float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bicubic", antialias=True,
                          align_corners=False).clamp(0, 1)
    return x * 2 - 1


def motion_from_video(
    renderer: MotionAutoencoder,
    frames: torch.Tensor,
    portrait: PortraitCode,
    relative: bool = True,
    callback: Optional[ProgressCallback] = None,
) -> Motion:
    """Video-driven motion: the motion encoder's code for each driving frame (relative to its first frame)."""
    x = frames_to_model_input(frames).to(model_device(renderer))
    alphas = extract_motion(renderer, x, portrait, relative=relative, callback=callback)
    return Motion(
        latents=alphas.float().cpu().unsqueeze(0),
        fps=FPS,
        variant="video",
        alpha0=portrait.alpha0.detach().cpu(),
        note=f"{alphas.shape[0]} frames of driving video, {'relative' if relative else 'absolute'} motion",
    )


def motion_take(motion: Motion, take: int = 0) -> torch.Tensor:
    """The latents (F,20) of one take, numbered from 0 (negative counts from the end)."""
    return check_motion(motion).latents[motion.take_index(take)]


def render_motion(
    renderer: MotionAutoencoder,
    portrait: PortraitCode,
    motion: Motion,
    take: int = 0,
    batch_size: Optional[int] = None,
    callback: Optional[ProgressCallback] = None,
    preview: Optional[PreviewCallback] = None,
) -> torch.Tensor:
    """Motion latents -> frames (F,256,256,3) float32 on the CPU in 0..1."""
    return FrameRender(renderer, portrait, motion_take(motion, take), batch_size).run(callback, preview)


class SpeechMotion:
    """A portrait (encoded) and a speech recording -> its motion, with every motion option: the speech features,
    the sampled motion with its control, the pauses calmed when the options ask.

    ``steps()`` estimates the features and the sampling before either runs; ``motion()`` runs them. Bad inputs
    fail when it is made, before the long work.
    """

    def __init__(self, generator: MotionGenerator, encoder: SpeechEncoder, portrait: PortraitCode,
                 waveform: torch.Tensor, sample_rate: int, options: ClipOptions) -> None:
        self.options, self.portrait = options, portrait
        self.waveform, self.sample_rate = waveform, sample_rate
        self.speech: Optional[SpeechFeatures] = SpeechFeatures(encoder, waveform, sample_rate)
        self.generator: Optional[MotionGenerator] = generator
        self.control = options.control()
        self.num_frames = self.speech.num_frames
        self.device = model_device(generator)

    def steps(self) -> list[Step]:
        """The speech features and the sampling, each timed by its warm-up."""
        if self.speech is None or self.generator is None:
            raise RuntimeError("the motion was sampled already: estimate before motion()")
        return [self.speech.estimate(), sampling_step(self.generator, self.num_frames, self.options.steps)]

    def motion(self, progress: Callable[[str], Optional[ProgressCallback]] = lambda desc: None) -> Motion:
        """Speech features, then the sampled motion (its notes say what was done), calmed in the speaker's pauses
        when the options ask. The speech encoder is let go once the features exist and the generator once the
        motion does, so the next step has their memory."""
        if self.speech is None or self.generator is None:
            raise RuntimeError("the motion was sampled already")
        network = self.speech.encoder.kind == "hubert"  # MFCC features hold no model
        audio = self.speech.run(progress("speech features"))
        self.speech = None
        if network:
            gc.collect()  # loading HuBERT leaves frames that hold it in a reference cycle: its 1.2 GB go now
        o = self.options
        motion = MotionSampling(self.generator, self.portrait, audio, self.control, seed=o.seed, steps=o.steps,
                                seed_mode=o.seed_mode).run(progress("sampling motion"))
        self.generator = None
        if o.calm_silence:
            activity = activity_for(motion, self.waveform, self.sample_rate, min_pause_s=o.calm_min_pause)
            motion = calm_silence(motion, activity, strength=o.calm_silence)
        return motion


def motion_video(renderer: MotionAutoencoder, image: torch.Tensor, latents: torch.Tensor, options: ClipOptions,
                 fps: float = FPS, upscaler: Optional[Upscaler] = None, portrait: Optional[PortraitCode] = None,
                 restorer: Optional[FaceRestorer] = None, pixels: OutputPixels = OutputPixels()) -> VideoRender:
    """Motion latents (F, 20) on a portrait picture, as a clip to render with the options' output settings (face
    restore, upscale, paste back into ``image``, batch size) into ``pixels``; ``portrait``: the picture already
    cropped and encoded."""
    if portrait is None:
        portrait = portrait_from_image(renderer, image, crop_mode=options.crop, box=options.box, face=options.face)
    return VideoRender(renderer, portrait, latents, fps=fps, original=image if options.paste_back else None,
                       paste=options.paste, upscaler=upscaler, batch_size=options.batch_size or None,
                       restorer=restorer.with_options(options.restore) if restorer else None, pixels=pixels).check()


class Animation:
    """A portrait picture and a speech recording -> the video of that head talking, with every clip option: the
    portrait cropped and encoded once, the motion (``SpeechMotion``), and the rendering with face restore, upscale
    and paste back.

    ``estimate()`` says what the whole run will cost before any of it runs (the motion is not sampled yet, so
    the render is timed on stand-in motion of the clip's length); ``motion()`` samples it; ``video()`` is the
    stage that renders it into writers. Bad inputs fail when the Animation is made, before the long work.
    """

    def __init__(self, renderer: MotionAutoencoder, generator: MotionGenerator, encoder: SpeechEncoder,
                 image: torch.Tensor, waveform: torch.Tensor, sample_rate: int, options: ClipOptions,
                 upscaler: Optional[Upscaler] = None, restorer: Optional[FaceRestorer] = None,
                 pixels: OutputPixels = OutputPixels()) -> None:
        self.options = options
        self.portrait = portrait_from_image(renderer, image, crop_mode=options.crop, box=options.box,
                                            face=options.face)
        self.sampling = SpeechMotion(generator, encoder, self.portrait, waveform, sample_rate, options)
        stand_in = stand_in_latents(self.portrait, self.sampling.num_frames)
        self.clip = motion_video(renderer, image, stand_in, options, upscaler=upscaler, portrait=self.portrait,
                                 restorer=restorer, pixels=pixels)

    def estimate(self, writers: Sequence[OutputKind] = ("mp4",)) -> RunEstimate:
        """Speech features, sampling and the video into ``writers`` ("mp4", "mov", a sequence's options), each
        timed by its warm-up."""
        return run_estimate(self.sampling.steps() + [VideoWrite(self.clip, writers).estimate()], self.clip.device)

    def motion(self, progress: Callable[[str], Optional[ProgressCallback]] = lambda desc: None) -> Motion:
        """The sampled motion (see ``SpeechMotion.motion``)."""
        return self.sampling.motion(progress)

    def video(self, motion: Motion) -> VideoWrite:
        """The stage that renders the motion's first take into writers (see ``VideoWrite.run``)."""
        return VideoWrite(replace(self.clip, latents=motion_take(motion, 0), fps=motion.fps).check())


class Conversation:
    """One picture with several faces, each with its own speech -> one video of them talking, each face listening
    (calmed, with the options' ``calm_silence``) while the others speak.

    Every track is padded with silence to the longest first, so each face's motion is sampled for the whole
    conversation and all faces move frame for frame in step; the video carries the tracks mixed. Each face is an
    ``Animation`` of its own; the video renders them together batch by batch (``video.conversation``).
    """

    def __init__(self, renderer: MotionAutoencoder, generator: MotionGenerator, encoder: SpeechEncoder,
                 image: torch.Tensor, speakers: Sequence[tuple[int, torch.Tensor, int]], options: ClipOptions,
                 upscaler: Optional[Upscaler] = None, restorer: Optional[FaceRestorer] = None,
                 pixels: OutputPixels = OutputPixels()) -> None:
        faces = [face for face, _, _ in speakers]
        if len(set(faces)) != len(faces):
            raise AniTalkerError(f"each speaker needs a face of its own; faces {faces} repeat one")
        self.tracks = same_length([(waveform, rate) for _, waveform, rate in speakers])
        self.faces = [Animation(renderer, generator, encoder, image, waveform, rate,
                                replace(options, face=face, paste_back=True), upscaler, restorer, pixels)
                      for face, (waveform, rate) in zip(faces, self.tracks)]
        self.note = join_notes(*(f"face {face}: {a.portrait.note}" for face, a in zip(faces, self.faces)
                                 if a.portrait.note))
        scene = self._together([a.clip for a in self.faces])
        self.clip, self.audio = scene.clip, scene.audio

    def _together(self, clips: Sequence[VideoRender]) -> Scene:
        """The faces linked one onto the other, as chained Render Video nodes link them, with their voices."""
        scene = Scene(clips[0], self.tracks[0])
        for clip, track in zip(clips[1:], self.tracks[1:]):
            scene = link(scene, clip, track)
        return replace(scene, clip=scene.clip.check())

    def estimate(self, writers: Sequence[OutputKind] = ("mp4",)) -> RunEstimate:
        """Every face's speech features and sampling, and the video of all faces into ``writers``."""
        steps = [step for face in self.faces for step in face.sampling.steps()]
        steps.append(VideoWrite(self.clip, writers).estimate())
        return run_estimate(steps, self.clip.device)

    def motion(self, progress: Callable[[str], Optional[ProgressCallback]] = lambda desc: None) -> list[Motion]:
        """Each face's motion from its own track, in the order the speakers were given."""
        return [face.motion(progress) for face in self.faces]

    def video(self, motions: Sequence[Motion]) -> VideoWrite:
        """The stage that renders every face's motion (first take) together into writers."""
        clips = [replace(face.clip, latents=motion_take(m, 0), fps=m.fps) for face, m in zip(self.faces, motions)]
        return VideoWrite(self._together(clips).clip)


def dub_motion(followed: FollowedFace, speech: Motion, options: DubOptions = DubOptions(),
               renderer: Optional[MotionAutoencoder] = None, take: int = 0) -> Motion:
    """The motion of a dub: the footage's head (``followed``) with the mouth of ``speech`` (sampled for
    ``followed.portrait``), at the footage's rate, as long as the speech (or the footage, when it goes on), with
    the shot that says where each frame sits in the footage. ``renderer`` measures which motion numbers move the
    eyes (needed for blinks from the footage)."""
    options.check()
    fps, track = followed.fps, followed.track
    footage_frames = track.frame_count
    talking = speech_frames(speech.num_frames / speech.fps, fps)
    frames = max(talking, footage_frames) if options.continue_footage else talking
    order = footage_order(footage_frames, frames, options.extend)
    spoken = resample_latents(motion_take(speech, take), speech.fps, fps, talking)
    share = None
    if options.blinks == "footage":
        if renderer is None:
            raise AniTalkerError("blinks from the footage need the renderer (it measures which motion numbers move "
                                 "the eyes): connect it, or take the blinks from the speech")
        share = eye_share(renderer, followed.portrait, followed.latents.std(dim=0).clamp(min=1e-3))
    latents = dub_latents(followed.latents, spoken, order, fps, talking, share, options.blinks, options.head,
                          options.mouth)
    boxes = track.crop_boxes()
    present = track.present[order].copy()
    present[talking:] = False  # the footage goes on as it is after the speech
    reference = (track.portrait_frame, tuple(int(v) for v in boxes[track.portrait_frame]))
    shot = Shot(order, boxes[order], present, reference, (track.width, track.height), fps, min(talking, frames))
    extended = "" if footage_frames >= talking else f"; the footage ({footage_frames} frames) {options.extend}s"
    note = f"{frames} frames at {fps:g} fps: the footage's head with the speech's mouth{extended}"
    return Motion(latents=latents[None].float(), fps=fps, variant="dub",
                  alpha0=followed.portrait.alpha0.detach().cpu(), shot=shot, note=note)


def dub_video(renderer: MotionAutoencoder, followed: FollowedFace, motion: Motion, footage: Footage,
              options: ClipOptions, upscaler: Optional[Upscaler] = None, restorer: Optional[FaceRestorer] = None,
              pixels: OutputPixels = OutputPixels()) -> VideoRender:
    """A dubbed motion pasted into its footage, as a clip to render with the options' output settings."""
    if motion.shot is None:
        raise AniTalkerError("this motion is not a dub's (it has no shot): make it with Dub Motion from the footage")
    return VideoRender(renderer, followed.portrait, motion_take(motion, 0), fps=motion.fps, paste=options.paste,
                       upscaler=upscaler, batch_size=options.batch_size or None,
                       restorer=restorer.with_options(options.restore) if restorer else None, pixels=pixels,
                       footage=footage, shot=motion.shot).check()
