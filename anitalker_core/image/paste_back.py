"""Putting rendered 256x256 heads back into the full-resolution original without a visible seam.

A square paste shows its edge wherever the renderer's reconstruction of the background differs from the
picture, and a renderer's small colour cast makes the whole square stand out. Two things hide it:

- a soft mask shaped like the head (an ellipse around where the training framing puts head and hair, with
  room for head motion) instead of the square, so the transition runs through the background next to the
  head rather than along a straight line; outside the mask the original pixels stay bit for bit;
- colour matching: a per-channel gain that makes the rendered frame's mean colour in the transition band
  equal the original's there. It is estimated once per clip from a fixed reference, the clip's first frame,
  and applied to every frame, so it cannot flicker and does not depend on how the clip is cut into batches.

``Compositor`` holds what is prepared once per clip (mask, the original's pixels, the colour match) and pastes
any number of frames batch by batch, on the device the frames are on: the same code serves the Paste Back node
(an IMAGE batch) and the streaming video writer (uint8 frames straight to the encoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PortraitError
from ..types import CropBox
from .pixels import to_samples
from .portrait_crop import TRAINING_FACE, check_image, single_image, to_rgb_float

MASKS = ("head", "box")
"""head: a soft ellipse around the head; box: the whole square crop with feathered edges."""
MAX_FEATHER = 0.5

HEAD_AXES = (0.70, 0.86)
"""Head ellipse semi-axes in face sides (across, down): hair and ears around a detected face box, plus room for
the head to turn and nod as AniTalker moves it."""
HEAD_CENTER_SHIFT = -0.06
"""The head ellipse's centre sits this many face sides above the face box's centre (hair above, chin below)."""
COLOR_GAIN_LIMITS = (0.67, 1.5)
"""A colour gain outside this range means the frames are not a rendering of this picture: left unmatched."""
COLOR_MIN_MEAN = 0.02
"""Channels darker than this on average give no stable ratio; they are left as rendered."""


def smoothstep(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return x * x * (3 - 2 * x)


def feather_mask(size: int, feather: float) -> torch.Tensor:
    """(size,size) weights: 1 in the interior, a smoothstep fall-off over ``feather * size`` px at the edges.

    The outermost pixels keep a small weight (the ramp starts half a pixel outside the box), so the box
    outline itself is soft and everything outside the box is left exactly as it was.
    """
    if feather <= 0:
        return torch.ones(size, size)
    ramp = max(1.0, feather * size)
    pos = torch.arange(size, dtype=torch.float32) + 0.5
    edge = smoothstep(torch.minimum(pos, size - pos) / ramp)
    return edge[:, None] * edge[None, :]


def head_mask(size: int, feather: float, face: Optional[tuple[float, float, float]] = None) -> torch.Tensor:
    """(size,size) soft ellipse around the head, inside the feathered square (so it is 0 at the box edge).

    ``face`` is the detected face box inside the crop as fractions of the crop side (centre x, centre y,
    side); without one the framing of the training crops is assumed. The ellipse fades out over
    ``feather * size`` pixels, inward from its edge.
    """
    cx, cy, side = face if face is not None else TRAINING_FACE
    ax, ay = HEAD_AXES[0] * side, HEAD_AXES[1] * side
    cy = cy + HEAD_CENTER_SHIFT * side
    pos = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    dx = (pos[None, :] - cx) / ax
    dy = (pos[:, None] - cy) / ay
    r = torch.sqrt(dx * dx + dy * dy)  # 1 on the ellipse
    width = max(feather, 1.0 / size) / min(ax, ay)  # fall-off width in ellipse radii
    return smoothstep((1 - r) / width) * feather_mask(size, feather)


@dataclass(frozen=True)
class PasteOptions:
    """How rendered heads go back into their picture; the defaults are the pack's defaults everywhere but on the
    Paste Back node, which keeps the feathered square it had before the head mask and colour match existed."""

    feather: float = 0.1
    """Width of the soft edge, as a fraction of the crop side (0 to ``MAX_FEATHER``)."""
    mask: str = "head"
    """One of ``MASKS``."""
    color_match: bool = True
    """Match the rendered colours to the picture around the head."""

    def check(self) -> "PasteOptions":
        if isinstance(self.feather, bool) or not isinstance(self.feather, (int, float)) \
                or not 0 <= self.feather <= MAX_FEATHER:
            raise PortraitError(f"feather {self.feather!r} must be between 0 and {MAX_FEATHER} (a fraction of the "
                                "crop side)")
        if self.mask not in MASKS:
            raise PortraitError(f"mask {self.mask!r} is not one of: {', '.join(MASKS)}")
        return self


def crop_matte(size: int, box: Optional[CropBox], options: PasteOptions = PasteOptions()) -> torch.Tensor:
    """(size,size) 0..1: the mask a head crop is pasted through (1 = the animated head), for frames that stay
    crops. A crop of the whole picture ('full') or one without a box gets the head mask of the training framing."""
    options.check()
    feather = float(options.feather)
    if options.mask == "box":
        return feather_mask(size, feather)
    face = box.face if box is not None and box.mode != "full" else None
    return head_mask(size, feather, face)


@dataclass(frozen=True)
class ColorMatch:
    """Per-channel gain taking the rendered frames' colours to the original's (1 = unchanged)."""

    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    note: str = ""

    @staticmethod
    def estimate(rendered: torch.Tensor, original: torch.Tensor, weight: torch.Tensor) -> "ColorMatch":
        """rendered, original (3,h,w) 0..1 over the same pixels; weight (h,w) where to compare them."""
        w = weight.detach().cpu().double()  # float64 on the host: some devices (Apple's MPS) have none
        total = float(w.sum())
        if total <= 0:
            return ColorMatch(note="colour match skipped: the box has no border inside the picture")
        means_r = (rendered.detach().cpu().double() * w).sum(dim=(1, 2)) / total
        means_o = (original.detach().cpu().double() * w).sum(dim=(1, 2)) / total
        gains = []
        for r, o in zip(means_r.tolist(), means_o.tolist()):
            gains.append(o / r if min(r, o) >= COLOR_MIN_MEAN else 1.0)
        lo, hi = COLOR_GAIN_LIMITS
        if not all(lo <= g <= hi for g in gains):
            return ColorMatch(note=f"colour match skipped: the frames' colours differ too much from the original "
                                   f"(gains {', '.join(f'{g:.2f}' for g in gains)}); are they of this portrait?")
        return ColorMatch(gain=tuple(gains), note="colour matched (gains R {:.3f} G {:.3f} B {:.3f})".format(*gains))

    def apply(self, frames: torch.Tensor) -> torch.Tensor:
        """(n,3,h,w) -> (n,3,h,w), clamped to 0..1."""
        if self.gain == (1.0, 1.0, 1.0):
            return frames
        g = torch.tensor(self.gain, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
        return (frames * g).clamp_(0, 1)


def _check_frames(frames: torch.Tensor) -> None:
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[0] == 0:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise PortraitError(f"expected rendered frames shaped (frames, 3, height, width), got {shape}")


class Compositor:
    """Pastes frames of one portrait into its original picture, prepared once per clip.

    Only the part of the box inside the picture is touched; pixels outside the mask are bit-equal to the
    original (alpha composited over white, gray repeated to RGB, like the crop). A 'full' crop (the whole
    picture, squeezed to a square for the model) is stretched back over the whole picture instead. With colour
    matching, ``match_colors`` takes the clip's first frame before anything is pasted.
    """

    def __init__(self, original: torch.Tensor, box: CropBox, options: PasteOptions = PasteOptions(),
                 device: Optional[torch.device] = None) -> None:
        if not isinstance(box, CropBox):
            raise PortraitError("paste back needs the crop box of the portrait (it has none: was it encoded "
                                "from a pre-cropped image?)")
        original, self.batch_note = single_image(original, "original image")
        original = check_image(original, "original image")
        h, w = original.shape[:2]
        if (w, h) != (box.image_width, box.image_height):
            raise PortraitError(f"the original image is {w}x{h} but the portrait was cropped from a "
                                f"{box.image_width}x{box.image_height} image; connect the same image you loaded")
        options.check()
        self.device = torch.device(device or "cpu")
        self.height, self.width = h, w
        self.picture = to_rgb_float(original)  # (H,W,3) float32 CPU, the untouched pixels of every frame
        self._bases: dict[tuple[str, bool, bool], np.ndarray] = {}  # what frames start from, as samples
        self.whole = box.mode == "full"
        if self.whole:
            self.target = (h, w)
            self.x0 = self.y0 = 0
            self.ya, self.yb, self.xa, self.xb = 0, h, 0, w
            weights = torch.ones(h, w)
        else:
            self.target = (box.size, box.size)
            self.x0, self.y0 = box.x0, box.y0
            self.ya, self.yb = max(box.y0, 0), min(box.y1, h)
            self.xa, self.xb = max(box.x0, 0), min(box.x1, w)
            full = crop_matte(box.size, box, options)
            weights = full[self.ya - self.y0: self.yb - self.y0, self.xa - self.x0: self.xb - self.x0]
        self.mask = weights.to(self.device)[None, None]  # (1,1,h,w)
        self.region = self.picture[self.ya:self.yb, self.xa:self.xb].permute(2, 0, 1)[None].to(self.device)
        self.color: Optional[ColorMatch] = None if options.color_match and not self.whole else ColorMatch()

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the pasted frames."""
        return self.width, self.height

    @property
    def note(self) -> str:
        notes = (self.batch_note, self.color.note if self.color is not None else "")
        return "; ".join(n for n in notes if n)

    def _fitted(self, frames: torch.Tensor) -> torch.Tensor:
        """(n,3,h,w) 0..1 -> the frames resized to the box and cut to its part inside the picture."""
        _check_frames(frames)
        f = frames.to(self.device, torch.float32)
        th, tw = self.target
        if f.shape[-2:] != (th, tw):
            shrink = th < f.shape[-2] or tw < f.shape[-1]
            f = F.interpolate(f, size=(th, tw), mode="bicubic", align_corners=False, antialias=shrink).clamp_(0, 1)
        return f[:, :, self.ya - self.y0: self.yb - self.y0, self.xa - self.x0: self.xb - self.x0]

    def match_colors(self, reference: torch.Tensor) -> "Compositor":
        """Fix the colour match from the clip's first frame (3,h,w) 0..1: the same gain for every frame, however
        the clip is cut into batches. Without colour matching this does nothing."""
        if self.color is None:
            band = 4 * self.mask[0, 0] * (1 - self.mask[0, 0])  # where the transition runs
            self.color = ColorMatch.estimate(self._fitted(reference[None])[0], self.region[0], band)
        return self

    def _blend(self, frames: torch.Tensor) -> torch.Tensor:
        """(n,3,h,w) 0..1 -> the box region (n,3,bh,bw) of the pasted frames, on the compositor's device."""
        if self.color is None:
            raise RuntimeError("colour matching needs the clip's first frame: call match_colors before pasting")
        f = self.color.apply(self._fitted(frames))
        if self.whole:
            return f
        return torch.lerp(self.region.expand_as(f), f, self.mask.expand_as(f))

    def restrict(self, keep: torch.Tensor) -> "Compositor":
        """Paste only where ``keep`` (H,W, over the whole picture) is true: the pixels this face owns when several
        faces share the picture."""
        part = keep[self.ya:self.yb, self.xa:self.xb].to(self.device, self.mask.dtype)
        self.mask = self.mask * part[None, None]
        return self

    def blend_into(self, frames: torch.Tensor, rendered: torch.Tensor) -> None:
        """Paste rendered heads (n,3,h,w) 0..1 into ``frames`` (n,H,W,3) float32 on the CPU, in place: over what is
        there (the picture with the faces pasted before), not over the bare picture."""
        if self.color is None:
            raise RuntimeError("colour matching needs the clip's first frame: call match_colors before pasting")
        f = self.color.apply(self._fitted(rendered))
        below = frames[:, self.ya:self.yb, self.xa:self.xb].permute(0, 3, 1, 2).to(self.device)
        blended = torch.lerp(below, f, self.mask.expand_as(f))
        frames[:, self.ya:self.yb, self.xa:self.xb] = blended.permute(0, 2, 3, 1).cpu()

    def paste(self, frames: torch.Tensor) -> torch.Tensor:
        """(n,3,h,w) 0..1 -> (n,H,W,3) float32 on the CPU (a ComfyUI IMAGE batch)."""
        region = self._blend(frames).permute(0, 2, 3, 1).cpu()
        out = self.picture[None].repeat(region.shape[0], 1, 1, 1)
        out[:, self.ya:self.yb, self.xa:self.xb] = region
        return out

    def paste_uint8(self, frames: torch.Tensor) -> np.ndarray:
        """(n,3,h,w) 0..1 -> (n,H,W,3) uint8 (what an encoder takes): only the box crosses from the device."""
        return self.paste_samples(frames, "uint8")

    def matte(self) -> torch.Tensor:
        """(H,W) float32 on the CPU, 0..1: the weight of the rendered head in every pasted frame (a ComfyUI MASK
        without its batch); 0 wherever the picture stays as it was."""
        out = torch.zeros(self.height, self.width)
        out[self.ya:self.yb, self.xa:self.xb] = self.mask[0, 0].cpu()
        return out

    def _base(self, sample_type: str, head_only: bool, matte: bool) -> np.ndarray:
        """(H,W,3 or 4) samples of what every frame starts from: the picture (or nothing, for the head alone),
        with the matte as a fourth channel when asked."""
        key = (sample_type, head_only, matte)
        if key not in self._bases:
            rgb = torch.zeros_like(self.picture) if head_only else self.picture
            layers = [rgb, self.matte()[..., None]] if matte else [rgb]
            self._bases[key] = to_samples(torch.cat(layers, dim=-1), sample_type)
        return self._bases[key]

    def paste_samples(self, frames: torch.Tensor, sample_type: str, matte: bool = False,
                      head_only: bool = False) -> np.ndarray:
        """(n,3,h,w) 0..1 -> (n,H,W,3) samples of ``sample_type`` quantised once from the float blend (a fourth
        channel holds the matte when ``matte``). ``head_only``: the colour-matched rendered head without the
        picture, black outside its box, to be laid over the picture through the matte. Only the box crosses from
        the device."""
        if head_only:
            if self.color is None:
                raise RuntimeError("colour matching needs the clip's first frame: call match_colors before pasting")
            region = self.color.apply(self._fitted(frames))
        else:
            region = self._blend(frames)
        region = to_samples(region.permute(0, 2, 3, 1), sample_type)
        out = np.repeat(self._base(sample_type, head_only, matte)[None], region.shape[0], axis=0)
        out[:, self.ya:self.yb, self.xa:self.xb, :3] = region
        return out


def check_image_frames(frames: torch.Tensor) -> None:
    """Rendered frames as an IMAGE batch: (T,h,w,3), at least one."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise PortraitError(f"expected rendered frames shaped (frames, height, width, 3), got {shape}")


PASTE_CHUNK = 8
"""Frames resized and blended at a time by ``paste_back``."""


def paste_back(original: torch.Tensor, frames: torch.Tensor, box: CropBox, options: PasteOptions = PasteOptions(),
               chunk: int = PASTE_CHUNK) -> torch.Tensor:
    """Composite rendered frames (T,h,w,3) 0..1 into the original picture -> (T,H,W,3) float32 CPU.

    Frames are resized and blended ``chunk`` at a time, so the work memory stays that of a few crops even for
    a 4K original (the output itself is the whole batch: for long clips use the streaming video writer).
    """
    check_image_frames(frames)
    compositor = Compositor(original, box, options).match_colors(frames[0].permute(2, 0, 1))
    n, chunk = frames.shape[0], max(1, int(chunk))
    out = torch.empty((n, compositor.height, compositor.width, 3), dtype=torch.float32)
    for s in range(0, n, chunk):
        out[s: s + chunk] = compositor.paste(frames[s: s + chunk].permute(0, 3, 1, 2))
    return out
