"""Several talking faces in one picture: each face is a clip of its own (its portrait, motion and voice), and the
clips are rendered together batch by batch into the same frames.

A conversation is built link by link, the way the nodes chain: ``onto(earlier, clip)`` puts ``clip``'s face into
the frames of ``earlier`` (which may already hold several faces). Nothing renders until the result is written:
then, for each batch of frames, every face renders that batch and is pasted in turn, so memory is one batch per
face whatever the length.

Where two faces' masks would overlap, each pixel goes to the face whose mask is the strongest there (the earlier
face on a tie): a face's own pixels are deep inside its mask, so no paste covers another face, and the combined
weight stays continuous across the boundary. Outside every mask the picture is untouched. A face whose motion
is shorter than the conversation glides to rest (its mouth settles, the head holds its slow pose) and stays so.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch

from ..errors import MotionError, PortraitError
from ..image.paste_back import Compositor
from ..image.pixels import to_samples
from ..motion.edit import split_by_speed
from .renderer import iter_frames

if TYPE_CHECKING:
    from .video_render import Finisher, VideoRender

REST_GLIDE_S = 0.4
"""How long a face whose track has ended takes to settle to rest."""


def owned_mattes(mattes: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """(H,W) 0..1 each, in paste order -> the part of each that its face keeps: where its matte is the strongest
    (the earlier face on a tie), else 0. Where all are 0 they stay 0."""
    stack = torch.stack([m.float() for m in mattes])
    winner = stack.argmax(dim=0)  # the first of equal maxima: the earlier face
    return [stack[i] * (winner == i) for i in range(len(mattes))]


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


def onto(earlier: "VideoRender", clip: "VideoRender") -> "VideoRender":
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


def check_faces(clip: "VideoRender") -> None:
    """What a conversation cannot do, refused before any frame is rendered."""
    for face in (*clip.beneath, clip):
        if face.portrait.crop is not None and face.portrait.crop.mode == "full":
            raise PortraitError("a face of a conversation was loaded with crop mode 'full' (the whole picture); "
                                "load each face with crop mode auto (and its face number) or manual")
        if face.num_frames != clip.num_frames:
            raise MotionError(f"the faces of a conversation have {face.num_frames} and {clip.num_frames} frames; "
                              "build it with video.conversation.onto, which holds the shorter ones at rest")
    if clip.pixels.head_only:
        raise PortraitError("head only writes one rendered head over transparency; a conversation has several "
                            "faces: write the frames with their matte instead")


def _rendered(face: "VideoRender", start: int, count: int) -> torch.Tensor:
    """Frames start..start+count of a face, rendered (n,3,256,256) 0..1 on its device."""
    latents = face.latents[start: start + count]
    return torch.cat([b for _, b in iter_frames(face.renderer, face.portrait, latents, face.batch_size or count)])


def conversation_compositors(clip: "VideoRender") -> list[Compositor]:
    """One compositor per face, in paste order, each restricted to the pixels its face owns."""
    faces = (*clip.beneath, clip)
    compositors = [face._compositor(clip.device) for face in faces]
    for compositor, owned in zip(compositors, owned_mattes([c.matte() for c in compositors])):
        compositor.restrict(owned > 0)
    return compositors


def conversation_finisher(clip: "VideoRender") -> "Finisher":
    """Each rendered batch of ``clip`` (the last face) with the same frames of the faces beneath it: all pasted
    into the picture in order, then cut into pieces of samples quantised once from the float frames."""
    faces = (*clip.beneath, clip)
    compositors = conversation_compositors(clip)
    picture = compositors[0].picture
    matte = sum(c.matte() for c in compositors) if clip.pixels.matte else None
    piece, samples = clip.piece_frames, clip.pixels.samples

    def finish(start: int, batch: torch.Tensor) -> Iterator[np.ndarray]:
        count = int(batch.shape[0])
        frames = picture[None].repeat(count, 1, 1, 1)
        for face, compositor in zip(faces, compositors):
            rendered = face._upscaled(batch if face is clip else _rendered(face, start, count))
            if compositor.color is None:
                compositor.match_colors(face.reference_frame())
            compositor.blend_into(frames, rendered)
        for s in range(0, count, piece):
            part = frames[s: s + piece]
            if matte is not None:
                part = torch.cat([part, matte[None, :, :, None].expand(part.shape[0], -1, -1, 1)], dim=-1)
            yield to_samples(part, samples)

    return finish
