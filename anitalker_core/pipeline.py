"""The AniTalker inference pipeline as a handful of composable steps.

portrait -> motion encoder (once) ; speech -> audio features ; (portrait, features, control) -> diffusion
motion generator -> motion latents ; (portrait, latents) -> warp renderer -> frames.
The ComfyUI nodes call these steps one node each; the headless command chains them.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Optional

import torch
import torch.nn.functional as F

from .audio.features import HubertFeatures, MfccFeatures
from .audio.waveform import prepare_waveform
from .diffusion.start_noise import start_noise
from .errors import AniTalkerError
from .image.portrait_crop import crop_portrait
from .models.motion_autoencoder import MotionAutoencoder
from .models.motion_generator import MotionGenerator
from .models.variance_adapter import Attributes
from .models.variants import get_variant
from .models.weight_files import HUBERT_DIR
from .motion import control as control_mod
from .types import (
    FPS,
    IMAGE_SIZE,
    AudioFeatures,
    Motion,
    PortraitCode,
    PreviewCallback,
    ProgressCallback,
    VarianceControl,
    check_motion,
)
from .video.renderer import Batches, encode_portrait, extract_motion, model_device, render_frames

log = logging.getLogger(__name__)

AUDIO_ENCODERS = {"hubert": f"HuBERT audio encoder ({HUBERT_DIR})", "mfcc": "MFCC audio encoder"}


def join_notes(*notes: str) -> str:
    """User-facing notes from several steps, one per line, empty ones dropped."""
    return "\n".join(n for n in notes if n)


def portrait_from_image(
    renderer: MotionAutoencoder,
    image: torch.Tensor,
    crop_mode: str = "auto",
    box: Optional[tuple[int, int, int]] = None,
    margin: Optional[float] = None,
) -> PortraitCode:
    """Find and crop the head like the training data, then encode it once for all frames to come.

    A batch of images uses its first (the note says so)."""
    crop, crop_box, note = crop_portrait(image, mode=crop_mode, box=box, margin=margin)
    return encode_portrait(renderer, crop, crop=crop_box, note=note)


def features_from_audio(
    encoder: HubertFeatures | MfccFeatures, waveform: torch.Tensor, sample_rate: int,
    callback: Optional[ProgressCallback] = None,
) -> AudioFeatures:
    """Any waveform at any rate and channel count -> the features the motion generator was trained on."""
    wave16k, note = prepare_waveform(waveform, sample_rate)
    features = encoder(wave16k, callback=callback)
    return replace(features, note=join_notes(note, features.note))


def speech_input(audio: AudioFeatures) -> torch.Tensor:
    """Batch the features the way the generator takes them: hubert (1,25,2F,1024); mfcc (1,4F,39)."""
    return audio.values.unsqueeze(0)


def check_compatible(generator: MotionGenerator, audio: AudioFeatures) -> None:
    needs = generator.audio_kind
    if audio.kind != needs:
        raise AniTalkerError(
            f"the motion generator '{generator.variant}' needs {needs.upper()} audio features, but the audio was "
            f"encoded with {audio.kind.upper()}; encode it with the {AUDIO_ENCODERS[needs]} or choose a stage-2 "
            f"file ending in _{audio.kind}.ckpt"
        )


def _given(control: VarianceControl, frames: int, takes: int, device: torch.device) -> tuple[Attributes, str]:
    """A control as the per-frame signals the variance adapter follows, for every take."""
    resolved = control_mod.resolve(control, frames)
    per_take = [t.to(device).expand(takes, -1, -1) for t in (resolved.pose, resolved.location, resolved.scale)]
    return Attributes(*per_take), join_notes(control.note, resolved.note)


def _motion_attributes(used: Attributes, takes: int) -> dict[str, torch.Tensor]:
    """The variance adapter's attributes as Motion fields: (takes, frames, k) on the CPU, pose in degrees."""
    fields = {"pose_deg": (used.pose, control_mod.POSE_LIMIT), "location": (used.location, 1.0),
              "scale": (used.scale, 1.0)}
    return {name: (value.float() * unit).expand(takes, -1, -1).cpu().contiguous()
            for name, (value, unit) in fields.items() if value is not None}


def check_sampling(generator: MotionGenerator, audio: AudioFeatures, takes: int = 1) -> None:
    """Refuse what the sampler cannot take, before any network runs."""
    check_compatible(generator, audio)
    if takes < 1:
        raise AniTalkerError(f"takes must be at least 1, got {takes}")
    if audio.num_frames < 1:
        raise AniTalkerError("the audio is shorter than one video frame (40 ms); give a longer clip")


def generate_motion(
    generator: MotionGenerator,
    portrait: PortraitCode,
    audio: AudioFeatures,
    control: Optional[VarianceControl] = None,
    seed: int = 0,
    steps: int = 50,
    takes: int = 1,
    seed_mode: str = "torch",
    callback: Optional[ProgressCallback] = None,
) -> Motion:
    """Diffusion motion generation: speech (+ optional pose/location/scale control) -> motion latents.

    The Motion also carries the pose, location and scale the variance adapter used for each take."""
    check_sampling(generator, audio, takes)
    frames = audio.num_frames
    device = model_device(generator)
    notes = [audio.note]
    given = None
    if control is not None and not get_variant(generator.variant).has_control:
        notes.append("this motion generator (audio only) has no pose/location/scale control; the control is ignored")
    elif control is not None:
        given, note = _given(control, frames, takes, device)
        notes.append(note)

    noise = start_noise(generator.variant, frames, seed, takes, seed_mode)
    cond = generator.condition(speech_input(audio).to(device), portrait.wa.to(device), portrait.alpha0.to(device),
                               given)
    latents, used = generator.sample(cond, noise.to(device), steps=steps, callback=callback)
    return Motion(
        latents=latents.float().cpu(),
        fps=FPS,
        variant=generator.variant,
        alpha0=portrait.alpha0.detach().cpu(),
        seeds=tuple(seed + i for i in range(takes)),
        note=join_notes(*notes),
        **_motion_attributes(used, takes),
    )


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
    batches: Optional[Batches] = None,
) -> torch.Tensor:
    """Motion latents -> frames (F,256,256,3) float32 on the CPU in 0..1 (``batches``: see ``render_frames``)."""
    return render_frames(renderer, portrait, motion_take(motion, take), batch_size=batch_size, callback=callback,
                         preview=preview, batches=batches)
