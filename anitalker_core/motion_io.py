"""Saving and loading motion sequences as .safetensors (latents + frame rate, variant and seeds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

import torch

from .errors import MotionError
from .types import Motion

FORMAT = "anitalker-motion"
VERSION = "1"


def save_motion(motion: Motion, path: Union[str, Path]) -> Path:
    from safetensors.torch import save_file

    from .motion_edit import check_motion

    check_motion(motion)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"latents": motion.latents.detach().cpu().contiguous()}
    if motion.alpha0 is not None:
        tensors["alpha0"] = motion.alpha0.detach().cpu().contiguous()
    meta = {"format": FORMAT, "version": VERSION, "fps": repr(float(motion.fps)), "variant": motion.variant,
            "seeds": json.dumps(list(motion.seeds)), "note": motion.note}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)  # never leave a half-written file under the real name
    return path


def load_motion(path: Union[str, Path]) -> Motion:
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise MotionError(f"motion file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            if meta.get("format") != FORMAT or "latents" not in keys:
                raise MotionError(f"{path} is not an AniTalker motion file (saved by Save Motion)")
            latents = f.get_tensor("latents")
            alpha0 = f.get_tensor("alpha0") if "alpha0" in keys else None
    except (SafetensorError, OSError, ValueError) as exc:
        raise MotionError(f"could not read motion file {path}: {exc}; it may be damaged") from exc
    if latents.ndim != 3 or latents.shape[1] == 0:
        raise MotionError(f"{path} holds an empty or malformed motion {tuple(latents.shape)}")
    return Motion(latents=latents, fps=float(meta.get("fps", "25")), variant=meta.get("variant", ""),
                  alpha0=alpha0, seeds=tuple(json.loads(meta.get("seeds", "[]"))), note=meta.get("note", ""))
