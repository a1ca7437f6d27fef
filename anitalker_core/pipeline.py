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

from . import control as control_mod
from .audio_features import HubertFeatures, MfccFeatures
from .audio_io import prepare_waveform
from .ddim import official_start_noise, sample_motion
from .errors import AniTalkerError, MotionError
from .motion_autoencoder import MotionAutoencoder
from .motion_generator import MotionGenerator
from .portrait_crop import crop_portrait
from .renderer import encode_portrait, extract_motion, model_device, render_frames
from .types import (FPS, MOTION_DIM, AudioFeatures, Motion, PortraitCode, PreviewCallback, ProgressCallback,
                    VarianceControl)

log = logging.getLogger(__name__)

SEED_MODES = ("torch", "official")


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
    """Find and crop the head like the training data, then encode it once for all frames to come."""
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise AniTalkerError(f"portrait_from_image takes one image, got a batch of {image.shape[0]}")
        image = image[0]
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
    needs = "mfcc" if generator.variant.startswith("mfcc") else "hubert"
    if audio.kind != needs:
        raise AniTalkerError(
            f"the motion generator '{generator.variant}' needs {needs.upper()} audio features, but the audio was "
            f"encoded with {audio.kind.upper()}; choose the "
            + ("'mfcc (built in)' audio encoder" if needs == "mfcc" else "chinese-hubert-large audio encoder")
            + f" or a stage-2 file ending in _{audio.kind}.ckpt"
        )


def start_noise(variant: str, num_frames: int, seed: int, takes: int, seed_mode: str) -> torch.Tensor:
    """(takes, F, 20) start noise; take i uses seed + i, so N takes equal N single runs with those seeds."""
    if seed_mode not in SEED_MODES:
        raise AniTalkerError(f"seed mode must be one of {SEED_MODES}, got {seed_mode!r}")
    noises = []
    for i in range(takes):
        if seed_mode == "official":
            noises.append(official_start_noise(seed + i, variant, num_frames))
        else:
            g = torch.Generator().manual_seed(seed + i)
            noises.append(torch.randn((1, num_frames, MOTION_DIM), generator=g))
    return torch.cat(noises, 0)


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
    """Diffusion motion generation: speech (+ optional pose/location/scale control) -> motion latents."""
    check_compatible(generator, audio)
    if takes < 1:
        raise AniTalkerError(f"takes must be at least 1, got {takes}")
    frames = audio.num_frames
    if frames < 1:
        raise AniTalkerError("the audio is shorter than one video frame (40 ms); give a longer clip")
    notes = [audio.note]
    use_control = control is not None
    if use_control and generator.variant == "hubert_audio_only":
        notes.append("this motion generator (audio only) has no pose/location/scale control; the control is ignored")
        use_control = False
    resolved = control_mod.resolve(control if control is not None else control_mod.make_control(), frames)
    pose, location, scale = resolved.pose, resolved.location, resolved.scale
    if use_control:
        notes.extend([control.note, resolved.note])

    device = model_device(generator)
    noise = start_noise(generator.variant, frames, seed, takes, seed_mode)
    latents = sample_motion(
        generator,
        portrait.wa.to(device),
        portrait.alpha0.to(device),
        speech_input(audio).to(device),
        pose.to(device).expand(takes, -1, -1),
        location.to(device).expand(takes, -1, -1),
        scale.to(device).expand(takes, -1, -1),
        noise.to(device),
        steps=steps,
        use_control=use_control,
        callback=callback,
    )
    return Motion(
        latents=latents.float().cpu(),
        fps=FPS,
        variant=generator.variant,
        alpha0=portrait.alpha0.detach().cpu(),
        seeds=tuple(seed + i for i in range(takes)),
        note=join_notes(*notes),
    )


def frames_to_model_input(frames: torch.Tensor) -> torch.Tensor:
    """(T,H,W,C) 0..1 -> (T,3,256,256) in [-1,1], resized with antialiasing when needed."""
    if frames.ndim == 3:
        frames = frames.unsqueeze(0)
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise AniTalkerError(f"expected a batch of video frames (T,H,W,C), got shape {tuple(frames.shape)}")
    x = frames[..., :3].permute(0, 3, 1, 2).float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (256, 256):
        x = F.interpolate(x, size=(256, 256), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
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
    from .motion_edit import check_motion

    check_motion(motion)
    if not -motion.num_takes <= take < motion.num_takes:
        raise MotionError(f"take {take} does not exist: this motion has {motion.num_takes} take(s), numbered from 0")
    return motion.latents[take]


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
    return render_frames(renderer, portrait, motion_take(motion, take), batch_size=batch_size, callback=callback,
                         preview=preview)
