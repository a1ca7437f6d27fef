"""A motion rendered straight into a video, batch by batch, in memory that does not grow with its length.

The motion of a whole clip is a few hundred kilobytes (20 numbers a frame), so nothing larger needs to exist
for more than one batch: each batch is rendered, optionally face-restored and upscaled, pasted back into the
full-size picture, handed on as samples (8-bit, or 16-bit or float for files that keep more) and dropped. Peak
memory is one batch at the output size, whether the clip lasts ten seconds or ten minutes and whether the picture
is 512 px or 4K.

``VideoRender`` describes such a clip: what its frames are made of and how each rendered batch becomes output
pixels. ``stages.video.VideoWrite`` drives it into files (the headless command, ComfyUI's VIDEO), so both
produce the same frames as Render Frames -> (upscale) -> Paste Back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch

from ..errors import AniTalkerError, MotionError, PortraitError
from ..image.face_restore import FaceRestorer
from ..image.paste_back import Compositor, PasteOptions, crop_matte
from ..image.track_paste import TrackPaste
from ..image.pixels import SAMPLE_TYPES, to_samples
from ..image.upscale import Upscaler
from ..models.motion_autoencoder import MotionAutoencoder
from ..types import FPS, PortraitCode, Shot
from .clip_edits import FrameOp
from .faces import Face, faces_finisher, owning
from .footage import Footage
from .renderer import Batches, check_latents, iter_frames, model_device

PIXELS_PER_PIECE = 32 * 2**20
"""Output pixels of 8-bit RGB handed on at a time (about 100 MB; proportionally fewer pixels of 16-bit, float or
RGBA samples): a GPU renders 64 frames per batch, which pasted into a 4K picture would be 1.6 GB at once."""

Finisher = Callable[[int, torch.Tensor], Iterator[np.ndarray]]
"""``finish(start, batch)``: a rendered batch (n,3,256,256) 0..1 that begins at frame ``start`` -> pieces
(k,H,W,C) of the output, samples as ``OutputPixels`` says."""


@dataclass(frozen=True)
class OutputPixels:
    """What the output frames are made of, chosen by the files they go to."""

    samples: str = "uint8"
    """One of ``SAMPLE_TYPES``: 8-bit for H.264, JPEG and PNG; 16-bit for 16-bit PNG and ProRes; float for EXR."""
    matte: bool = False
    """A fourth channel: the matte each frame is pasted through (1 = the animated head)."""
    head_only: bool = False
    """The rendered head alone (black outside its box), to lay over the picture through the matte."""

    def check(self) -> "OutputPixels":
        if self.samples not in SAMPLE_TYPES:
            raise AniTalkerError(f"output samples {self.samples!r} are not one of: {', '.join(SAMPLE_TYPES)}")
        return self

    @property
    def channels(self) -> int:
        return 4 if self.matte else 3

    @property
    def bytes_per_pixel(self) -> int:
        return self.channels * np.dtype(self.samples).itemsize


@dataclass(frozen=True)
class VideoRender:
    """One take of a motion, to be rendered on demand.

    original: the full picture the portrait was cropped from; when given, every frame is pasted back into it
    (``paste``). restorer: a face model that turns each 256x256 head into a sharp face of its side (512), first;
    upscaler: applied next, to the (restored) frames, before paste back. The face model goes first because it was
    trained on small, soft faces like the render, while an upscaler only sharpens what it is given; an upscaler
    after it adds pixels where the head in the picture is larger than the face model's side.

    beneath: other faces of the same picture (earlier links of a conversation, see ``conversation.onto``), each a
    clip of the same length; they are rendered with this one batch by batch and pasted first (``faces``).

    color_reference: the motion latent (1,dim) whose rendered frame the colour match is estimated from; None: the
    clip's first frame. A window of a longer clip (``trimmed``) keeps the whole clip's, so its frames are the same
    pixels as those frames of the whole. reshape: operations on the finished frames (``clip_edits``: crop, resize),
    applied in order to every piece.

    footage and shot: a dub. Each frame is pasted into the footage frame ``shot`` names, at the box the face was
    followed to there (``image.track_paste``), its colours matched on the frame the portrait was taken from;
    frames without the face are the footage's own.
    """

    renderer: MotionAutoencoder
    portrait: PortraitCode
    latents: torch.Tensor
    fps: float = FPS
    original: Optional[torch.Tensor] = None
    paste: PasteOptions = PasteOptions()
    upscaler: Optional[Upscaler] = None
    batch_size: Optional[int] = None
    restorer: Optional[FaceRestorer] = None
    pixels: OutputPixels = OutputPixels()
    beneath: tuple["VideoRender", ...] = ()
    color_reference: Optional[torch.Tensor] = None
    reshape: tuple[FrameOp, ...] = ()
    footage: Optional[Footage] = None
    shot: Optional[Shot] = None

    def check(self) -> "VideoRender":
        """Refuse what would fail later, before any frame is rendered."""
        check_latents(self.renderer, self.latents)
        if not (isinstance(self.fps, (int, float)) and self.fps > 0):
            raise MotionError(f"the frame rate must be positive, got {self.fps!r}")
        self.paste.check()
        self.pixels.check()
        if self.original is not None:
            self._compositor(torch.device("cpu"))  # validates the picture against the crop box
        if self.footage is not None or self.shot is not None:
            self._check_footage()
        if self.beneath:
            self._check_faces()
            for face in self.beneath:
                face.check()
        return self

    def _check_footage(self) -> None:
        """A dub needs its footage and its shot, frame for frame, and nothing of a picture's paste."""
        if self.footage is None or self.shot is None:
            raise MotionError("a dub needs both the footage and the dubbed motion's shot: connect Dub Motion's motion "
                              "and the same footage as original")
        if self.shot.num_frames != self.num_frames:
            raise MotionError(f"the motion has {self.num_frames} frames but its shot {self.shot.num_frames}")
        if (self.footage.width, self.footage.height) != tuple(self.shot.size):
            raise PortraitError(f"the footage is {self.footage.width}x{self.footage.height} but the motion was made "
                                f"for {self.shot.size[0]}x{self.shot.size[1]} footage: connect the footage the face "
                                "was tracked in")
        if len(self.shot.frames) and int(self.shot.frames.max()) >= self.footage.frame_count:
            raise MotionError(f"the motion shows footage frame {int(self.shot.frames.max())} but the footage has "
                              f"{self.footage.frame_count}: connect the footage the face was tracked in")
        if self.original is not None or self.beneath:
            raise PortraitError("a dub pastes into its footage only: leave out the picture and other faces")

    def _check_faces(self) -> None:
        """What a clip of several faces cannot do, refused before any frame is rendered."""
        for face in (*self.beneath, self):
            if face.portrait.crop is not None and face.portrait.crop.mode == "full":
                raise PortraitError("a face of a conversation was loaded with crop mode 'full' (the whole picture); "
                                    "load each face with crop mode auto (and its face number) or manual")
            if face.num_frames != self.num_frames:
                raise MotionError(f"the faces of a conversation have {face.num_frames} and {self.num_frames} "
                                  "frames; build it with video.conversation.onto, which holds the shorter ones at "
                                  "rest")
        if self.pixels.head_only:
            raise PortraitError("head only writes one rendered head over transparency; a conversation has several "
                                "faces: write the frames with their matte instead")

    @property
    def num_frames(self) -> int:
        return int(self.latents.shape[0])

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    @property
    def device(self) -> torch.device:
        return model_device(self.renderer)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames, known without rendering any."""
        width, height = self.finished_size
        for op in self.reshape:
            width, height = op.size(width, height)
        return width, height

    @property
    def finished_size(self) -> tuple[int, int]:
        """(width, height) of the frames before ``reshape``: the picture's (or footage's), or the (restored,
        upscaled) crop's."""
        if self.footage is not None:
            return self.footage.width, self.footage.height
        if self.original is not None:
            h, w = self.original.shape[-3:-1]
            return int(w), int(h)
        side = self.restorer.side if self.restorer is not None else self.renderer.size
        side *= self.upscaler.scale if self.upscaler is not None else 1
        return side, side

    def trimmed(self, first: int, count: int) -> "VideoRender":
        """Frames ``first`` .. ``first + count`` of this clip (and of the faces beneath it), rendered as the whole
        clip renders them."""
        if not (0 <= first and count > 0 and first + count <= self.num_frames):
            raise MotionError(f"frames {first}..{first + count} are not within the clip's {self.num_frames}")
        reference = self.color_reference if self.color_reference is not None else self.latents[:1]
        beneath = tuple(face.trimmed(first, count) for face in self.beneath)
        shot = self.shot.window(first, count) if self.shot is not None else None
        return replace(self, latents=self.latents[first: first + count], color_reference=reference,
                       beneath=beneath, shot=shot)

    def reshaped(self, op: FrameOp) -> "VideoRender":
        """The clip with ``op`` applied to its finished frames after those already there."""
        return replace(self, reshape=(*self.reshape, op))

    @property
    def piece_frames(self) -> int:
        """Frames per piece: at most the bytes of ``PIXELS_PER_PIECE`` 8-bit RGB pixels."""
        width, height = self.size
        return max(1, PIXELS_PER_PIECE * 3 // (width * height * self.pixels.bytes_per_pixel))

    @property
    def piece_bytes(self) -> int:
        """Bytes of one output frame."""
        width, height = self.size
        return width * height * self.pixels.bytes_per_pixel

    def matte(self) -> torch.Tensor:
        """(H,W) float32 0..1 on the CPU: the mask each frame is pasted through (1 = the animated head), at the
        output's size; for frames that stay crops, the mask they would be pasted through."""
        if self.footage is not None:
            raise MotionError("a dub's matte moves with the face: it comes with each frame (its fourth channel)")
        if self.beneath:
            matte = sum(c.matte() for c in self._face_compositors(torch.device("cpu")))
        elif self.original is not None:
            matte = self._compositor(torch.device("cpu")).matte()
        else:
            matte = crop_matte(self.finished_size[0], self.portrait.crop, self.paste)
        if not self.reshape:
            return matte
        samples = matte[None, :, :, None].numpy()
        for op in self.reshape:
            samples = op(samples)
        return torch.from_numpy(np.ascontiguousarray(samples[0, :, :, 0]))

    def layout(self) -> dict[str, Any]:
        """Where the frames sit in the picture, for a compositor's sidecar: the picture's size, the crop box the
        head was taken from and, when pasted back, the region of each frame the head can change."""
        crop = self.portrait.crop
        info: dict[str, Any] = {"pasted_back": self.original is not None}
        if crop is not None:
            info["picture_size"] = [crop.image_width, crop.image_height]
            info["crop_box"] = {"x": crop.x0, "y": crop.y0, "size": crop.size, "mode": crop.mode}
        if self.original is not None:
            boxes = [f._compositor(torch.device("cpu")) for f in (*self.beneath, self)]
            info["paste_region"] = {"x0": min(c.xa for c in boxes), "y0": min(c.ya for c in boxes),
                                    "x1": max(c.xb for c in boxes), "y1": max(c.yb for c in boxes)}
        if self.beneath:
            info["faces"] = len(self.beneath) + 1
        if self.shot is not None:
            boxes = self.shot.boxes[self.shot.present]
            width, height = self.shot.size
            info["footage"] = {"size": list(self.shot.size), "frames_with_the_face": int(self.shot.present.sum())}
            if len(boxes):
                info["paste_region"] = {"x0": max(0, int(boxes[:, 0].min())), "y0": max(0, int(boxes[:, 1].min())),
                                        "x1": min(width, int((boxes[:, 0] + boxes[:, 2]).max())),
                                        "y1": min(height, int((boxes[:, 1] + boxes[:, 2]).max()))}
        if self.reshape:
            info["reshaped"] = [{"op": type(op).__name__.lower(), **vars(op)} for op in self.reshape]
        return info

    def _compositor(self, device: torch.device) -> Compositor:
        if self.portrait.crop is None:
            raise PortraitError("paste back needs the portrait's crop box; load the portrait with Load Portrait "
                                "(or the headless command) from the same picture")
        return Compositor(self.original, self.portrait.crop, self.paste, device=device)

    def batches(self, latents: Optional[torch.Tensor] = None) -> Batches:
        """The rendered batches of the clip (or of ``latents``), lazily: nothing renders before it is asked for."""
        return iter_frames(self.renderer, self.portrait, self.latents if latents is None else latents,
                           self.batch_size)

    def _upscaled(self, batch: torch.Tensor) -> torch.Tensor:
        """Face-restored, then upscaled, as the clip asks."""
        if self.restorer is not None:
            batch = self.restorer(batch)
        return self.upscaler(batch) if self.upscaler is not None else batch

    def reference_frame(self) -> torch.Tensor:
        """The clip's first frame rendered alone (3,H,W) 0..1, restored and upscaled: what the colour match is
        estimated from, bit for bit the same whatever batch size renders the clip."""
        latent = self.color_reference if self.color_reference is not None else self.latents[:1]
        (_, first), = iter_frames(self.renderer, self.portrait, latent, 1)
        return self._upscaled(first)[0]

    def _rendered(self, start: int, count: int) -> torch.Tensor:
        """Frames ``start`` .. ``start + count``, rendered (n,3,256,256) 0..1 on the clip's device."""
        latents = self.latents[start: start + count]
        return torch.cat([b for _, b in iter_frames(self.renderer, self.portrait, latents, self.batch_size or count)])

    def _face_compositors(self, device: torch.device) -> list[Compositor]:
        """One compositor per face (those beneath, then this one), each restricted to the pixels it owns."""
        return owning([face._compositor(device) for face in (*self.beneath, self)])

    def _faces_finisher(self) -> Finisher:
        """The finisher of a clip with faces beneath it: every face rendered for each batch and pasted in turn."""

        def heads(face: "VideoRender") -> Callable[[int, int, Optional[torch.Tensor]], torch.Tensor]:
            return lambda start, count, batch: face._upscaled(batch if batch is not None else
                                                              face._rendered(start, count))

        faces = [Face(compositor, heads(face), face.reference_frame)
                 for face, compositor in zip((*self.beneath, self), self._face_compositors(self.device))]
        return faces_finisher(faces, self.piece_frames, self.pixels.samples, self.pixels.matte)

    def _footage_finisher(self) -> Finisher:
        """Each rendered batch pasted into its footage frames along the shot's boxes."""
        footage, shot, pixels, piece = self.footage, self.shot, self.pixels, self.piece_frames
        paste = TrackPaste(self.paste, self.device)

        def finish(start: int, batch: torch.Tensor) -> Iterator[np.ndarray]:
            if paste.color is None:  # on the frame the portrait was cropped from: its own code renders it back
                (_, head), = iter_frames(self.renderer, self.portrait, self.portrait.alpha0.float().cpu(), 1)
                frame, box = shot.reference
                paste.match_colors(self._upscaled(head)[0], footage.frames([frame])[0], np.array(box))
            heads = self._upscaled(batch)
            for s in range(0, heads.shape[0], piece):
                cut = slice(start + s, start + s + min(piece, heads.shape[0] - s))
                yield paste.paste(footage.frames(shot.frames[cut]), heads[s: s + piece], shot.boxes[cut],
                                  shot.present[cut], pixels.samples, pixels.matte, pixels.head_only)

        return finish

    def finisher(self) -> Finisher:
        """How each rendered batch becomes output pixels: restored and upscaled, pasted back (colours matched to the
        clip's first frame) and cut into pieces of samples, quantised once from the float frames, then reshaped.
        Prepared once per clip."""
        if self.reshape:
            return _reshaped(replace(self, reshape=()).finisher(), self.reshape)
        if self.footage is not None:
            return self._footage_finisher()
        if self.beneath:
            return self._faces_finisher()
        compositor = self._compositor(self.device) if self.original is not None else None
        piece, pixels = self.piece_frames, self.pixels
        matte = None
        if compositor is None and pixels.matte:
            matte = to_samples(self.matte()[None, :, :, None], pixels.samples)

        def crop_pieces(part: torch.Tensor) -> np.ndarray:
            rgb = to_samples(part.permute(0, 2, 3, 1), pixels.samples)
            if matte is None:
                return rgb
            return np.concatenate([rgb, np.repeat(matte, rgb.shape[0], axis=0)], axis=-1)

        def finish(start: int, batch: torch.Tensor) -> Iterator[np.ndarray]:
            batch = self._upscaled(batch)
            if compositor is not None and compositor.color is None:
                alone = start == 0 and batch.shape[0] == 1 and self.color_reference is None
                compositor.match_colors(batch[0] if alone else self.reference_frame())
            for s in range(0, batch.shape[0], piece):
                part = batch[s: s + piece]
                if compositor is None:
                    yield crop_pieces(part)
                else:
                    yield compositor.paste_samples(part, pixels.samples, pixels.matte, pixels.head_only)

        return finish


def _reshaped(finish: Finisher, ops: tuple[FrameOp, ...]) -> Finisher:
    """``finish`` with ``ops`` applied to each of its pieces."""

    def reshaped(start: int, batch: torch.Tensor) -> Iterator[np.ndarray]:
        for piece in finish(start, batch):
            for op in ops:
                piece = op(piece)
            yield piece

    return reshaped
