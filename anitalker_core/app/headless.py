"""The headless path: one clip animated with the models a process has loaded (``models.loading.LoadedModels``),
or its two halves apart: the motion sampled and saved (``sample_clip``), a saved motion rendered
(``render_clip``). Each composes the pipeline's stages and the writers; loading lives in the models layer.

``anitalker animate`` is "load, then one clip"; a batch worker keeps one ``LoadedModels`` across its rows, so a
hundred clips cost one load per worker instead of a hundred. The clip's options arrive as ``ClipOptions``,
whichever way they were given (command line or manifest row), so every option means the same in both.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import torch

from ..errors import AniTalkerError
from ..models.loading import LoadedModels
from ..options import ClipOptions
from ..stages.estimate import RunEstimate, run_estimate
from ..stages.video import VideoWrite
from ..types import Motion, ProgressCallback

if TYPE_CHECKING:  # loaded with the models, not with the command
    from ..image.face_restore import FaceRestorer
    from ..image.upscale import Upscaler
    from ..video.video_render import OutputPixels

Progress = Callable[[str], ProgressCallback]
"""Makes the progress callback of one stage from its description ("sampling motion", "rendering frames")."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def tqdm_progress(desc: str, leave: bool = True) -> ProgressCallback:
    """A terminal progress bar as a core progress callback (done, total)."""
    from tqdm.auto import tqdm

    bar = tqdm(desc=desc, unit="it", leave=leave)

    def callback(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return callback


Recording = tuple[torch.Tensor, int]
"""A waveform [C, T] and its sample rate."""


def is_prores(path: Optional[Path]) -> bool:
    return path is not None and path.suffix.lower() == ".mov"


def outputs_of(clip: ClipOptions) -> tuple[list, OutputPixels]:
    """What the clip writes (the kinds ``VideoWrite`` estimates) and the pixels they need: the most precise samples
    any of them keeps, and the matte as a fourth channel when one writes it. Options that would be ignored, or
    that no output can honour, are refused here, before any work."""
    from ..image.pixels import widest
    from ..video.frame_sequence import SEQUENCE_SAMPLES, SequenceOptions, check_sequence_folder
    from ..video.video_render import OutputPixels

    kinds: list = []
    samples = []
    sequence = clip.sequence
    if clip.frames_dir is not None:
        sequence.check()
        check_sequence_folder(clip.frames_dir)
        kinds.append(sequence)
        samples.append(SEQUENCE_SAMPLES[sequence.format])
    else:
        default = SequenceOptions()
        if (sequence.format, sequence.first_frame) != (default.format, default.first_frame):
            raise AniTalkerError("--frame-format and --first-frame describe the images of --frames-dir; give "
                                 "--frames-dir DIR too, or leave them out")
        if clip.matte == "separate":
            raise AniTalkerError("--matte separate writes matte_<number>.png beside the images of --frames-dir; give "
                                 "--frames-dir DIR too")
        if clip.matte == "alpha" and not is_prores(clip.out):
            raise AniTalkerError(f"an H.264 mp4 has no alpha channel, so --matte alpha cannot go into {clip.out}; "
                                 "write --out clip.mov (ProRes 4444 with alpha) or --frames-dir DIR")
    if clip.head_only and clip.matte == "none":
        raise AniTalkerError("--head-only needs a matte to say where the head is: add --matte alpha (or separate)")
    if clip.out is not None:
        kinds.append("mov" if is_prores(clip.out) else "mp4")
        samples.append("uint16" if is_prores(clip.out) else "uint8")
    return kinds, OutputPixels(widest(samples), clip.matte != "none", clip.head_only)


def image_models(models: LoadedModels, clip: ClipOptions,
                 say: Callable[[str], None]) -> tuple[Optional[FaceRestorer], Optional[Upscaler]]:
    """The clip's face model and upscale model, whichever of --face-restore and --upscale-model named each."""
    from ..image.face_restore import FaceRestorer
    from ..image.upscale import split_models

    clip.restore.check()
    given = [(flag, path) for flag, path in (("--upscale-model", clip.upscale_model),
                                             ("--face-restore", clip.face_restore)) if path is not None]
    loaded = [(flag, models.upscaler(path)) for flag, path in given]
    for flag, model in loaded:
        if flag == "--face-restore" and not isinstance(model, FaceRestorer):
            raise AniTalkerError(f"--face-restore {clip.face_restore} is an upscale model ({model.name}), not a "
                                 "face-restoration model (GFPGAN, RestoreFormer, CodeFormer); give it to "
                                 "--upscale-model")
    restorer, upscaler = split_models(loaded)
    for what, model in (("face model", restorer), ("upscale model", upscaler)):
        if model is not None:
            say(f"{what}: {model.name}")
    return restorer, upscaler


def _read_inputs(clip: ClipOptions, audio_required: bool = True) -> tuple[torch.Tensor, Optional[Recording]]:
    """The portrait picture and the recording (waveform, rate): a bad file fails in a second, not after loading 1 GB
    of weights."""
    from ..audio.waveform import load_audio_file
    from ..image.picture import load_picture

    if clip.portrait is None or (audio_required and clip.audio is None):
        raise AniTalkerError("a clip needs a portrait" + (" and a speech recording" if audio_required else ""))
    image = load_picture(clip.portrait)
    return image, (load_audio_file(clip.audio) if clip.audio is not None else None)


def _check_outputs(clip: ClipOptions, estimate: bool, dry_run: bool) -> tuple[list, OutputPixels]:
    if clip.out is None and clip.frames_dir is None and not (estimate and dry_run):
        raise AniTalkerError("nothing to write: give --out FILE.mp4 (or .mov), --frames-dir DIR, or both")
    clip.paste.check()
    return outputs_of(clip)


def _estimated(run: RunEstimate, say: Callable[[str], None], memory_check: bool, dry_run: bool) -> bool:
    """Say the estimate and refuse a run that cannot fit (unless ``memory_check`` is off); True: stop here (a dry
    run)."""
    say(run.summary())
    if memory_check:
        run.check()
    if dry_run:
        say("dry run: nothing was written")
    return dry_run


def _write_video(video: VideoWrite, clip: ClipOptions, audio: Optional[Recording],
                 stage: Callable[[str], Optional[ProgressCallback]], say: Callable[[str], None]) -> Path:
    """Render ``video`` into the clip's video file and/or image sequence, each written under a temporary name."""
    from ..video.frame_sequence import FrameSequenceWriter
    from ..video.writers import Mp4Writer, ProResWriter

    fps = video.clip.fps
    writers = []
    if clip.out is not None:
        writers.append(ProResWriter(clip.out, fps=fps, alpha=clip.matte == "alpha")
                       if is_prores(clip.out) else Mp4Writer(clip.out, fps=fps))
    if clip.frames_dir is not None:
        writers.append(FrameSequenceWriter(clip.frames_dir, fps=fps, options=clip.sequence,
                                           layout=video.clip.layout()))
    width, height = video.clip.size
    video.run(writers, audio=audio, callback=stage("rendering frames"))
    where = " and ".join(str(p) for p in (clip.out, clip.frames_dir) if p is not None)
    say(f"wrote {where} ({video.clip.num_frames} frames of {width}x{height} at {video.clip.fps:g} fps)")
    result = clip.out or clip.frames_dir
    assert result is not None
    return result


def animate_clip(models: LoadedModels, clip: ClipOptions, progress: Optional[Progress] = None,
                 say: Callable[[str], None] = _stderr, estimate: bool = False, dry_run: bool = False,
                 memory_check: bool = True) -> Optional[Path]:
    """One portrait and one speech file -> the video at ``clip.out`` (mp4, or ProRes mov) and/or the image sequence
    in ``clip.frames_dir``.

    ``say`` receives the notes meant for the user. Each output is written under a temporary name and renamed
    when complete. ``estimate``: once the models are loaded, measure a short warm-up and say how long the run
    will take and how much memory it needs, refusing it when it cannot fit (unless ``memory_check`` is off);
    ``dry_run`` stops there (returns None). Batch rows skip the estimate: their first clip is the measurement.
    """
    from ..motion.files import save_motion
    from ..audio.waveform import load_audio_file
    from ..pipeline import Animation, Conversation

    if clip.portrait is None or (clip.audio is None) == (not clip.speaker):
        raise AniTalkerError("a clip needs a portrait and either a speech recording (--audio FILE) or, for a "
                             "conversation, one --speaker FACE:FILE per face (not both)")
    if clip.speaker and clip.save_motion:
        raise AniTalkerError("--save-motion saves the motion of one face; a conversation has one per --speaker: "
                             "leave it out, or animate each face alone with --face N --audio FILE")
    kinds, pixels = _check_outputs(clip, estimate, dry_run)
    stage = progress or (lambda desc: None)
    models.files(clip.variant)
    speakers = [(face, *load_audio_file(path)) for face, path in clip.speaker]
    image, audio = _read_inputs(clip, audio_required=not speakers)
    restorer, upscaler = image_models(models, clip, say)
    loaded = (models.renderer(clip.variant), models.generator(clip.variant), models.speech_encoder(clip.variant),
              image)
    if speakers:
        animation = Conversation(*loaded, speakers, clip, upscaler, restorer, pixels)
        audio, note = animation.audio, animation.note
    else:
        assert audio is not None
        animation = Animation(*loaded, *audio, clip, upscaler, restorer, pixels)
        note = animation.portrait.note
    if note:
        say(note)
    if estimate and _estimated(animation.estimate(kinds or ["mp4"]), say, memory_check, dry_run):
        return None

    motion = animation.motion(stage)
    for take in (motion if speakers else [motion]):
        if take.note:
            say(take.note)
    if clip.save_motion:
        say(f"saved the motion to {save_motion(motion, clip.save_motion)}")  # exactly the motion that is rendered
    return _write_video(animation.video(motion), clip, audio, stage, say)


def sample_clip(models: LoadedModels, clip: ClipOptions, progress: Optional[Progress] = None,
                say: Callable[[str], None] = _stderr, estimate: bool = False, dry_run: bool = False,
                memory_check: bool = True) -> Optional[Path]:
    """One portrait and one speech file -> the motion, saved at ``clip.save_motion`` (Save Motion's format), with
    every motion option of ``animate_clip`` and nothing rendered. ``estimate`` and ``dry_run`` as there."""
    from ..motion.files import save_motion
    from ..pipeline import SpeechMotion, portrait_from_image

    if clip.save_motion is None:
        raise AniTalkerError("nothing to write: give --out FILE.safetensors for the motion")
    stage = progress or (lambda desc: None)
    models.files(clip.variant)
    image, audio = _read_inputs(clip)
    assert audio is not None
    portrait = portrait_from_image(models.renderer(clip.variant), image, crop_mode=clip.crop, box=clip.box,
                                   face=clip.face)
    if portrait.note:
        say(portrait.note)
    sampling = SpeechMotion(models.generator(clip.variant), models.speech_encoder(clip.variant), portrait, *audio,
                            clip)
    if estimate and _estimated(run_estimate(sampling.steps(), sampling.device), say, memory_check, dry_run):
        return None
    motion = sampling.motion(stage)
    if motion.note:
        say(motion.note)
    path = save_motion(motion, clip.save_motion)
    say(f"saved the motion to {path} ({motion.num_frames} frames at {motion.fps:g} fps, seed {motion.seeds[0]})")
    return path


def render_clip(models: LoadedModels, motion_file: Path, clip: ClipOptions, take: int = 0,
                progress: Optional[Progress] = None, say: Callable[[str], None] = _stderr, estimate: bool = False,
                dry_run: bool = False, memory_check: bool = True) -> Optional[Path]:
    """A saved motion on a portrait -> the mp4 at ``clip.out`` and/or the PNGs in ``clip.frames_dir``, with every
    output option of ``animate_clip`` (paste back, upscale); ``clip.audio``, when given, is the soundtrack.
    ``estimate`` and ``dry_run`` as there."""
    from ..motion.files import load_motion
    from ..pipeline import motion_take, motion_video

    kinds, pixels = _check_outputs(clip, estimate, dry_run)
    stage = progress or (lambda desc: None)
    motion = load_motion(motion_file)  # a wrong file fails before any weight loads
    latents = motion_take(motion, take)
    models.files(None)
    image, audio = _read_inputs(clip, audio_required=False)
    restorer, upscaler = image_models(models, clip, say)
    clip_video = motion_video(models.renderer(), image, latents, clip, fps=motion.fps, upscaler=upscaler,
                              restorer=restorer, pixels=pixels)
    if clip_video.portrait.note:
        say(clip_video.portrait.note)
    video = VideoWrite(clip_video, kinds or ["mp4"])
    if estimate and _estimated(run_estimate([video.estimate()], clip_video.device), say, memory_check, dry_run):
        return None
    return _write_video(video, clip, audio, stage, say)


def dub_clip(models: LoadedModels, clip: ClipOptions, progress: Optional[Progress] = None,
             say: Callable[[str], None] = _stderr, estimate: bool = False, dry_run: bool = False,
             memory_check: bool = True) -> Optional[Path]:
    """New speech on existing footage: the face in ``clip.video`` followed through the shot, its head kept and its
    mouth made to say ``clip.audio``, written like ``animate_clip`` writes (mp4, ProRes mov and/or frames) at the
    footage's size and rate. ``estimate`` and ``dry_run`` as there: the estimate (of the speech features, the
    sampling and the video) comes once the face is followed, before the long work."""
    from ..audio.tracks import dub_track
    from ..audio.waveform import load_audio_file
    from ..pipeline import SpeechMotion, dub_motion, dub_video
    from ..stages.footage import follow_face
    from ..video.footage import FootageFile

    if clip.video is None or clip.audio is None:
        raise AniTalkerError("a dub needs footage (--video FILE) and the new speech (--audio FILE)")
    clip.dub.check()
    kinds, pixels = _check_outputs(clip, estimate, dry_run)
    stage = progress or (lambda desc: None)
    models.files(clip.variant)
    waveform, rate = load_audio_file(clip.audio)  # a bad file fails before any weight loads
    footage = FootageFile(clip.video)
    say(f"footage: {footage.width}x{footage.height}, {footage.frame_count} frames at {float(footage.fps):g} fps")
    restorer, upscaler = image_models(models, clip, say)
    renderer = models.renderer(clip.variant)
    followed = follow_face(renderer, footage, clip.follow, stage)
    say(followed.note)
    sampling = SpeechMotion(models.generator(clip.variant), models.speech_encoder(clip.variant), followed.portrait,
                            waveform, rate, clip)
    if estimate:
        stand_in = Motion(latents=followed.portrait.alpha0.float()[None].repeat(1, sampling.num_frames, 1))
        planned = dub_motion(followed, stand_in, replace(clip.dub, blinks="speech"))  # the blinks cost no render
        video = VideoWrite(dub_video(renderer, followed, planned, footage, clip, upscaler, restorer, pixels),
                           kinds or ["mp4"])
        if _estimated(run_estimate(sampling.steps() + [video.estimate()], video.device), say, memory_check,
                      dry_run):
            return None
    speech = sampling.motion(stage)
    motion = dub_motion(followed, speech, clip.dub, renderer)
    say(motion.note)
    shot = motion.shot
    audio = dub_track((waveform, rate), footage.audio() if clip.keep_footage_audio or clip.continue_footage
                      else None, shot.frames, shot.fps, shot.speech_frames, clip.keep_footage_audio)
    video = VideoWrite(dub_video(renderer, followed, motion, footage, clip, upscaler, restorer, pixels))
    return _write_video(video, clip, audio, stage, say)


def clip_of_row(models: LoadedModels, clip: ClipOptions, progress: Optional[Progress] = None,
                say: Callable[[str], None] = _stderr) -> Optional[Path]:
    """A batch row: a dub when it names footage (``video``), else a portrait animated."""
    run = dub_clip if clip.video is not None else animate_clip
    return run(models, clip, progress=progress, say=say)
