"""A face followed through footage as a stage: the face found and tracked, the portrait cropped from its clearest
frame, and the footage's own motion read off the tracked crops by the motion encoder, batch by batch.

The footage is read twice, a few frames at a time (once shrunk, to find the face; once at full size, to crop it),
so memory holds a batch of frames and a few numbers per frame whatever the length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..image.face_track import FaceTrack, FollowOptions, track_face
from ..image.portrait_crop import crop_square
from ..models.motion_autoencoder import MotionAutoencoder
from ..types import PortraitCode, ProgressCallback
from ..video.footage import Footage
from ..video.renderer import encode_portrait, extract_motion, model_device

BATCH = 16
"""Footage frames cropped and encoded at a time."""

Progress = Callable[[str], Optional[ProgressCallback]]


@dataclass(frozen=True)
class FollowedFace:
    """A face followed through footage: the portrait (cropped from the frame it is clearest in), where the face is
    in every frame, and the footage's own motion (F,20) at the footage's rate (the portrait's code where the face
    is missing)."""

    portrait: PortraitCode
    track: FaceTrack
    latents: torch.Tensor
    fps: float

    @property
    def note(self) -> str:
        return self.track.note


def follow_face(renderer: MotionAutoencoder, footage: Footage, options: FollowOptions = FollowOptions(),
                progress: Progress = lambda desc: None,
                preview: Optional[Callable[[torch.Tensor], None]] = None) -> FollowedFace:
    """Find and follow the face ``options`` name through ``footage`` (see ``image.face_track``), take the portrait
    from its portrait frame and read the footage's motion off the tracked crops. Progress and Cancel go through
    ``progress(description)`` callbacks; ``preview`` gets the latest frame read."""
    fps = float(footage.fps)
    track = track_face(lambda indices, side: footage.frames(indices, side), footage.frame_count, footage.width,
                       footage.height, fps, options.face, options.portrait_frame, options.every,
                       progress("finding the face"))
    frame = footage.frames([track.portrait_frame])[0]
    box = track.crop_box(track.portrait_frame)
    portrait = encode_portrait(renderer, crop_square(frame, box).to(model_device(renderer)), crop=box)
    latents = portrait.alpha0.detach().float().cpu().repeat(footage.frame_count, 1)
    present = track.present
    callback = progress("reading the footage's motion")
    for start in range(0, footage.frame_count, BATCH):
        indices = [j for j in range(start, min(start + BATCH, footage.frame_count)) if present[j]]
        if indices:
            frames = footage.frames(indices)
            crops = torch.cat([crop_square(f, track.crop_box(j)) for f, j in zip(frames, indices)])
            latents[indices] = extract_motion(renderer, crops, relative=False).float().cpu()
            if preview is not None:
                preview(torch.from_numpy(frames[-1]).float().div(255))
        if callback is not None:
            callback(min(start + BATCH, footage.frame_count), footage.frame_count)
    return FollowedFace(portrait, track, latents, fps)

