"""Several talking faces in one picture: each face is a clip of its own (its portrait, motion and voice), and the
clips are rendered together batch by batch into the same frames (``faces``).

A conversation is built link by link, the way the nodes chain: ``link(earlier, clip, audio)`` puts ``clip``'s face
into the frames of ``earlier`` (which may already hold several faces) and its voice into their sound. Nothing
renders until the result is written: then, for each batch of frames, every face renders that batch and is pasted
in turn, so memory is one batch per face whatever the length. A face whose motion is shorter than the conversation
glides to rest (its mouth settles, the head holds its slow pose) and stays so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import torch

from ..audio.tracks import Track, mix
from ..errors import MotionError, PortraitError
from ..motion.edit import split_by_speed
from .video_render import VideoRender

REST_GLIDE_S = 0.4
"""How long a face whose track has ended takes to settle to rest."""


@dataclass(frozen=True)
class Scene:
    """What a conversation is so far: the clip (its last face, with the faces beneath it) and the voices mixed."""

    clip: VideoRender
    audio: Optional[Track] = None


def hold_at_rest(latents: torch.Tensor, frames: int, fps: float) -> torch.Tensor:
    """(F,dim) -> (frames,dim): the motion, then a raised-cosine glide over ``REST_GLIDE_S`` from its last frame to
    its slow part there (the head pose without the mouth's and eyes' quick motion), held to the end."""
    have = int(latents.shape[0])
    if frames <= have:
        return latents
    slow, _ = split_by_speed(latents[None].double(), fps)
    last, rest = latents[-1].double(), slow[0, -1]
    glide = max(1, round(REST_GLIDE_S * fps))
    k = torch.arange(1, frames - have + 1, dtype=torch.float64).clamp(max=glide)
    ease = (0.5 - 0.5 * torch.cos(math.pi * k / glide))[:, None]
    tail = last + (rest - last) * ease
    return torch.cat([latents, tail.to(latents.dtype)])


def onto(earlier: VideoRender, clip: VideoRender) -> VideoRender:
    """``clip``'s face talking in the frames of ``earlier`` (a clip pasted back into its picture, itself perhaps a
    conversation): one clip as long as the longest motion, the shorter ones held at rest."""
    if earlier.original is None:
        raise PortraitError("a face can only be added to a video pasted back into its picture: give the earlier "
                            "Render Video its original picture")
    if earlier.fps != clip.fps:
        raise MotionError(f"the faces' motions run at {earlier.fps:g} and {clip.fps:g} fps; make both with the "
                          "same frame rate")
    faces = [*earlier.beneath, replace(earlier, beneath=()), replace(clip, beneath=(), original=earlier.original)]
    frames = max(f.num_frames for f in faces)
    faces = [replace(f, latents=hold_at_rest(f.latents, frames, f.fps)) for f in faces]
    return replace(faces[-1], beneath=tuple(faces[:-1]))


def link(earlier: Scene, clip: VideoRender, audio: Optional[Track] = None) -> Scene:
    """The conversation ``earlier`` with ``clip``'s face added and its voice (``audio``) mixed into the sound."""
    voices = [a for a in (earlier.audio, audio) if a is not None]
    return Scene(onto(earlier.clip, clip), mix(voices) if len(voices) > 1 else (voices[0] if voices else None))
