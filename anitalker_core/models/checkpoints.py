"""Loading the released AniTalker checkpoints safely and strictly.

Files are read tensors-only (``weights.reader``: a file crafted to run code on unpickling is refused instead of
executed; ``.safetensors`` conversions work too). Every failure names the file, what was expected and what was
found.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, TypeVar, Union

import torch

from ..device_policy import CHANNELS_LAST, PRECISIONS
from ..errors import CheckpointError
from .motion_autoencoder import MotionAutoencoder
from .motion_generator import MotionGenerator
from .variance_adapter import ORDER, PREFIX
from ..weights.variants import find_variant
from ..weights.reader import (EMA_PREFIX, STAGE1_PREFIX, PathLike, Source, checkpoint_kind, describe_keys,
                              read_weights)

log = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=torch.nn.Module)

CHECKPOINT = Source("checkpoint", "The official AniTalker checkpoints hold tensors only; re-download the file from "
                                  "the official source")


def read_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    """A flat {name: tensor} from a .ckpt/.pt/.pth/.bin or .safetensors file, never executing code.

    Strict on purpose: the released checkpoints are flat (or under ``state_dict``); upscale and face models, saved
    in their authors' many layouts, have their own reader (``image.model_file``)."""
    return _flatten(read_weights(path, CHECKPOINT), Path(path))


def _flatten(data: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(data, Mapping) and "state_dict" in data and isinstance(data["state_dict"], Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(data).__name__}, not a dictionary of weights")
    tensors = {str(k): v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"checkpoint {path} contains no weight tensors")
    return tensors


def _load_strict(model: torch.nn.Module, sd: dict[str, torch.Tensor], path: Union[str, Path], what: str,
                 allow_extra: bool) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    extra = [k for k in sd if k not in expected]
    if missing:
        raise CheckpointError(
            f"{path} is not a complete {what} checkpoint: {len(missing)} of {len(expected)} expected weights are "
            f"missing ({describe_keys(missing)}); the file holds {len(sd)} tensors and looks like a "
            f"{checkpoint_kind(sd)} file. Use the official file for this loader"
        )
    wrong = [f"{k} (expected {tuple(expected[k].shape)}, found {tuple(sd[k].shape)})" for k in expected
             if tuple(sd[k].shape) != tuple(expected[k].shape)]
    if wrong:
        raise CheckpointError(f"{path} does not fit the {what}: wrong shapes for {describe_keys(wrong, 3)}")
    if extra:
        if not allow_extra:
            raise CheckpointError(f"{path} has unexpected weights for the {what}: {describe_keys(extra)}")
        log.info("%s: ignoring %d entries not used at inference (%s)", path, len(extra), describe_keys(extra))
    model.load_state_dict({k: sd[k] for k in expected}, strict=True)


def _checked_state_dict(path: PathLike, kind: str, instead: str) -> tuple[Path, dict[str, torch.Tensor]]:
    """The weights in ``path`` if they are a ``kind`` model, else a CheckpointError that says what to pick."""
    path = Path(path)
    sd = read_state_dict(path)
    found = checkpoint_kind(sd)
    if found != kind:
        raise CheckpointError(f"{path} is a {found} file, not {instead}")
    return path, sd


def _unfilled(build: Callable[[], ModelT]) -> ModelT:
    """The network ``build`` makes, with uninitialised memory where its random initial weights would be: a loader
    overwrites every weight and buffer (``_load_strict`` refuses a file that lacks one), so drawing 100 M random
    numbers first would only cost time."""
    with torch.device("meta"):
        model = build()
    return model.to_empty(device="cpu")


def stage1_from_state_dict(sd: dict[str, torch.Tensor], source: Union[str, Path] = "the stage-1 weights",
                           precision: str = "fp32", channels_last: bool = CHANNELS_LAST) -> MotionAutoencoder:
    """Stage-1 weights (keys ``enc.*``/``dec.*``, optionally prefixed ``lia.``) -> MotionAutoencoder in eval mode.

    ``precision`` (fp32/fp16/bf16) is the render autocast precision, resolved by ``device_policy``."""
    sd = {k[len(STAGE1_PREFIX):] if k.startswith(STAGE1_PREFIX) else k: v for k, v in sd.items()}
    model = _unfilled(MotionAutoencoder)
    _load_strict(model, sd, source, "stage-1 renderer", allow_extra=True)
    model.compute_dtype = PRECISIONS[precision]
    model.channels_last = channels_last
    return model.eval().requires_grad_(False)


def load_stage1(path: PathLike, device: Union[str, torch.device] = "cpu", precision: str = "fp32",
                channels_last: bool = CHANNELS_LAST) -> MotionAutoencoder:
    """stage1.ckpt -> MotionAutoencoder in eval mode on ``device`` (see ``stage1_from_state_dict``)."""
    path, sd = _checked_state_dict(path, "stage-1 renderer", "the stage-1 renderer; load it with the matching "
                                                               "loader and pick stage1.ckpt here")
    return stage1_from_state_dict(sd, path, precision, channels_last).to(device)


def detect_stage2_variant(keys) -> str:
    """Which of the released stage-2 models a set of (prefix-free) keys belongs to."""
    keys = set(keys)
    audio = "mfcc" if "down_sample2.weight" in keys else "hubert"
    attributes = {name for name in ORDER if f"{PREFIX[name]}_predictor.fc.weight" in keys}
    found = find_variant(audio, attributes)
    if found is None:
        controls = ", ".join(sorted(attributes)) or "no"
        raise CheckpointError(f"this stage-2 file uses {audio.upper()} audio with {controls} control, which AniTalker "
                              "never released")
    return found.name


def stage2_from_state_dict(sd: dict[str, torch.Tensor],
                           source: Union[str, Path] = "the stage-2 weights") -> MotionGenerator:
    """A released stage-2 state dict (``x_T``, ``model.*``, ``ema_model.*``, or bare keys) -> its EMA
    MotionGenerator in eval mode; the variant is detected from the keys."""
    if any(k.startswith(EMA_PREFIX) for k in sd):
        sd = {k[len(EMA_PREFIX):]: v for k, v in sd.items() if k.startswith(EMA_PREFIX)}
    try:
        variant = detect_stage2_variant(sd)
    except CheckpointError as exc:
        raise CheckpointError(f"{source}: {exc}") from exc
    model = _unfilled(lambda: MotionGenerator(variant))
    _load_strict(model, sd, source, f"stage-2 motion generator ({variant})", allow_extra=False)
    return model.eval().requires_grad_(False)


def load_stage2(path: PathLike, device: Union[str, torch.device] = "cpu") -> MotionGenerator:
    """A released stage-2 file -> its EMA MotionGenerator in eval mode on ``device``. It samples in fp32 (see
    ``device_policy``)."""
    path, sd = _checked_state_dict(path, "stage-2 motion generator", "a stage-2 motion generator; pick one of the "
                                                                     "stage2_*.ckpt files here")
    return stage2_from_state_dict(sd, path).to(device)
