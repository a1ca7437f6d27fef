"""Several talking faces pasted into the same frames, batch by batch: each face's rendered heads blended in turn into
copies of the picture, each through the part of its mask it owns.

Where two faces' masks would overlap, each pixel goes to the face whose mask is the strongest there (the earlier
face on a tie): a face's own pixels are deep inside its mask, so no paste covers another face, and the combined
weight stays continuous across the boundary. Outside every mask the picture is untouched.

Nothing here knows how a face is rendered: each ``Face`` brings its compositor, its finished frames for a window of
the clip and its colour reference, so this module serves any clip that has several faces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch

from ..image.paste_back import Compositor
from ..image.pixels import to_samples


@dataclass(frozen=True)
class Face:
    """One face of the picture: where and how it is pasted, its finished heads (n,3,h,w) 0..1 for frames ``start``
    .. ``start + count`` (given the frames already rendered when it is the face the batch was rendered for), and the
    frame its colours are matched on."""

    compositor: Compositor
    heads: Callable[[int, int, Optional[torch.Tensor]], torch.Tensor]
    reference: Callable[[], torch.Tensor]


def owned_mattes(mattes: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """(H,W) 0..1 each, in paste order -> the part of each that its face keeps: where its matte is the strongest
    (the earlier face on a tie), else 0. Where all are 0 they stay 0."""
    stack = torch.stack([m.float() for m in mattes])
    winner = stack.argmax(dim=0)  # the first of equal maxima: the earlier face
    return [stack[i] * (winner == i) for i in range(len(mattes))]


def owning(compositors: Sequence[Compositor]) -> list[Compositor]:
    """The compositors, in paste order, each restricted to the pixels its face owns."""
    for compositor, owned in zip(compositors, owned_mattes([c.matte() for c in compositors])):
        compositor.restrict(owned > 0)
    return list(compositors)


def faces_finisher(faces: Sequence[Face], piece: int, samples: str, matte: bool = False
                   ) -> Callable[[int, torch.Tensor], Iterator[np.ndarray]]:
    """``finish(start, batch)``: the batch rendered for the last face, with the same frames of the faces before it,
    all pasted into the picture in order, then cut into pieces of ``piece`` frames of ``samples`` quantised once from
    the float frames (with the faces' mattes summed as a fourth channel when ``matte``)."""
    picture = faces[0].compositor.picture
    summed = sum(f.compositor.matte() for f in faces) if matte else None

    def finish(start: int, batch: torch.Tensor) -> Iterator[np.ndarray]:
        count = int(batch.shape[0])
        frames = picture[None].repeat(count, 1, 1, 1)
        for i, face in enumerate(faces):
            heads = face.heads(start, count, batch if i == len(faces) - 1 else None)
            if face.compositor.color is None:
                face.compositor.match_colors(face.reference())
            face.compositor.blend_into(frames, heads)
        for s in range(0, count, piece):
            part = frames[s: s + piece]
            if summed is not None:
                part = torch.cat([part, summed[None, :, :, None].expand(part.shape[0], -1, -1, 1)], dim=-1)
            yield to_samples(part, samples)

    return finish
