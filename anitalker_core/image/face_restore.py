"""Sharper faces: a face-restoration network (GFPGAN, RestoreFormer, CodeFormer) over the rendered head.

AniTalker renders 256x256; pasted into a large picture the head is enlarged several times and looks soft. Face
models were trained to turn a blurred or small face into a sharp 512x512 one, so each rendered crop is resized to
the model's side (bicubic), scaled to -1..1 as their authors feed them, restored, mapped back to 0..1 and
clamped. The crop already is the head, framed like the training data, so there is no face alignment step.

spandrel loads these files (ComfyUI's own upscale loader too) as 1x "FaceSR" models, but calling a spandrel
descriptor runs them the way it runs an upscaler: 0..1 in, padded to the network's minimum, which gives garbage for
GFPGAN. Here the bare network is called with the input its authors give it, in fp32 where it has no half precision,
and GFPGAN under bf16 autocast on a GPU that computes bf16 (``face_autocast``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as F

from ..device_policy import autocast, cuda_has_bf16
from ..errors import AniTalkerError, CheckpointError

RESIZE_FILTER = "bicubic"
"""How a crop is brought to the model's side (and how ``restore_strength`` 0 looks): bicubic, as Paste Back
resizes; antialiased when a larger frame is shrunk."""
RESTORE_BATCH = 4
"""Faces per network call: a face model at 512x512 needs about as much activation memory per face as an upscaler
does for eight 256x256 frames."""


@dataclass(frozen=True)
class FaceArchitecture:
    """How the authors call one face model: its side, the keyword arguments of its forward pass and the name of its
    fidelity argument (CodeFormer's ``w``), if it has one."""

    side: int
    call: dict = field(default_factory=dict)
    fidelity: Optional[str] = None
    gpu_bf16: bool = False
    """Whether it runs under bf16 autocast on a GPU that computes bf16 (``face_autocast``). Only GFPGAN: RestoreFormer
    and CodeFormer look each feature up in a codebook by nearest distance, and bf16 rounding changes which entry
    wins. With random weights and bf16 autocast on the CPU, a GFPGAN v1.4 face moved 0.5/255 on average (2.5/255 at
    most) from fp32, a small RestoreFormer's 4.4/255 (200/255 at most)."""


FACE_ARCHITECTURES = {
    # stored noise rather than fresh noise for every frame: fresh noise would make a video shimmer
    "GFPGAN": FaceArchitecture(512, {"return_rgb": False, "randomize_noise": False}, gpu_bf16=True),
    "RestoreFormer": FaceArchitecture(512),
    "CodeFormer": FaceArchitecture(512, fidelity="weight"),  # spandrel_extra_arches, when installed
}
"""spandrel's face-restoration architectures the pack knows how to run, by spandrel's architecture id."""


@dataclass(frozen=True)
class RestoreOptions:
    """How strongly faces are restored; the defaults are the pack's defaults everywhere."""

    strength: float = 1.0
    """0 = the plain bicubic resize, 1 = the model's face; in between a blend that keeps some original texture."""
    fidelity: float = 0.5
    """CodeFormer's fidelity weight w (0: the model's own face, 1: closest to the input); CodeFormer's own default.
    Other models have none and ignore it."""

    def check(self) -> "RestoreOptions":
        for name, value in (("restore_strength", self.strength), ("codeformer_fidelity", self.fidelity)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise AniTalkerError(f"{name} {value!r} must be between 0 and 1")
        return self


Network = Callable[[torch.Tensor, float], torch.Tensor]
"""``network(faces, fidelity)``: (n,3,side,side) in -1..1 -> the restored faces in -1..1."""


class FaceRestorer:
    """``restorer(frames)``: head crops (n,3,h,w) 0..1 -> restored faces (n,3,side,side) 0..1 on the frames' device.

    The resize, the scaling to the network's range, the blend and the slicing live here, shared by Render Video,
    the Face Restore node and the headless command; ``network`` is the bare model call (any callable in tests).
    """

    def __init__(self, network: Network, side: int, options: RestoreOptions = RestoreOptions(),
                 batch: int = RESTORE_BATCH, name: str = "", has_fidelity: bool = False) -> None:
        self.network, self.side, self.batch, self.name = network, int(side), max(1, int(batch)), name
        self.options, self.has_fidelity = options.check(), has_fidelity

    def with_options(self, options: RestoreOptions) -> "FaceRestorer":
        """The same model with other options (one loaded model serves clips with different settings)."""
        return FaceRestorer(self.network, self.side, options, self.batch, self.name, self.has_fidelity)

    def resized(self, frames: torch.Tensor) -> torch.Tensor:
        """(n,3,h,w) 0..1 -> (n,3,side,side) 0..1: what the model sees, and what strength 0 gives."""
        x = frames.float()
        if x.shape[-2:] == (self.side, self.side):
            return x
        shrink = x.shape[-2] > self.side or x.shape[-1] > self.side
        return F.interpolate(x, size=(self.side, self.side), mode=RESIZE_FILTER, align_corners=False,
                             antialias=shrink).clamp_(0, 1)

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        check_faces(frames)
        strength = float(self.options.strength)
        parts = []
        for s in range(0, frames.shape[0], self.batch):
            plain = self.resized(frames[s: s + self.batch])
            if strength == 0:
                parts.append(plain)
                continue
            out = self.network(plain * 2 - 1, float(self.options.fidelity))
            restored = out.to(device=plain.device, dtype=torch.float32).add(1).div_(2).clamp_(0, 1)
            parts.append(restored if strength == 1 else torch.lerp(plain, restored, strength))
        return torch.cat(parts) if len(parts) > 1 else parts[0]


def check_faces(frames: Any) -> None:
    """Face crops (n,3,h,w), square, at least one: face models were trained on square head crops."""
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[0] == 0:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise AniTalkerError(f"face restoration takes frames shaped (frames, 3, height, width), got {shape}")
    if frames.shape[-1] != frames.shape[-2]:
        raise AniTalkerError(f"face restoration takes square head crops (like AniTalker's 256x256 frames), got "
                             f"{frames.shape[-1]}x{frames.shape[-2]}; crop the face square first")


def is_face_model(descriptor: Any) -> bool:
    """A spandrel descriptor of a face-restoration model (spandrel's purpose "FaceSR")."""
    return getattr(descriptor, "purpose", None) == "FaceSR"


def architecture_of(descriptor: Any, name: str = "") -> FaceArchitecture:
    arch = getattr(getattr(descriptor, "architecture", None), "id", "?")
    if arch not in FACE_ARCHITECTURES:
        raise CheckpointError(f"{name or 'the face model'} is a {arch} face model, which the pack cannot run yet; "
                              f"use one of {', '.join(FACE_ARCHITECTURES)} (e.g. GFPGANv1.4.pth)")
    return FACE_ARCHITECTURES[arch]


def face_autocast(spec: FaceArchitecture, device: torch.device) -> Optional[torch.dtype]:
    """The autocast precision a face model runs in on ``device`` when none is asked for: bf16 on a GPU that computes
    it, for the architectures that keep their faces in it (``FaceArchitecture.gpu_bf16``); None (fp32) elsewhere,
    the CPU included. GFPGAN costs about 400 GFLOP a face, thirteen frames' worth of rendering, so at 1080p with
    face restoration it is most of a GPU's work; bf16 runs its convolutions on the tensor cores at half the memory."""
    return torch.bfloat16 if spec.gpu_bf16 and cuda_has_bf16(device) else None


def face_restorer(descriptor: Any, device: Union[str, torch.device], dtype: Optional[torch.dtype] = None,
                  name: str = "", exact: bool = False) -> FaceRestorer:
    """A spandrel face-model descriptor as a ``FaceRestorer`` on ``device``, moved there, its weights in ``dtype``
    (default: theirs; upcast to fp32 when asked for a half precision the architecture lacks: its activations overflow
    in fp16). Unless ``exact``, it runs under ``face_autocast`` where that picks a lower precision: autocast leaves
    the weights as they are, so a descriptor ComfyUI shares with other nodes keeps them."""
    spec = architecture_of(descriptor, name)
    device = torch.device(device)
    low = None if exact else face_autocast(spec, device)
    dtype = dtype or next(descriptor.model.parameters()).dtype
    notes = []
    if dtype == torch.float16 and not descriptor.supports_half:
        dtype = torch.float32
        notes.append(f"fp32: {descriptor.architecture.id} has no fp16")
    if low is not None:
        notes.append("bf16 autocast")
    model = descriptor.model.to(device=device, dtype=dtype).eval()

    def network(faces: torch.Tensor, fidelity: float) -> torch.Tensor:
        kwargs = dict(spec.call, **({spec.fidelity: fidelity} if spec.fidelity else {}))
        # contiguous NCHW as the authors feed it: an IMAGE's frames arrive channels-last, and GFPGAN flattens its
        # features with .view, which needs the plain layout
        with autocast(device, low) if low is not None else contextlib.nullcontext():
            out = model(faces.to(device=device, dtype=dtype).contiguous(), **kwargs)
        return out[0] if isinstance(out, (tuple, list)) else out

    label = f"{name} ({descriptor.architecture.id} face restoration, {spec.side}x{spec.side}"
    label += "".join(f", {n}" for n in notes) + ")"
    return FaceRestorer(network, spec.side, name=label.strip(), has_fidelity=spec.fidelity is not None)


def face_side(descriptor: Any) -> int:
    """The side of the faces a face-model descriptor gives, known without moving or running it."""
    return architecture_of(descriptor).side
