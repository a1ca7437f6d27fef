"""Motion files: latents saved as .safetensors, so a good take can be kept, shared and rendered later.

Layout (format version 2): tensor ``latents`` (takes, frames, dim) and, when known, ``alpha0`` (1, dim), the
portrait's own motion code, and ``pose_deg`` (takes, frames, 3), ``location`` and ``scale`` (takes, frames, 1),
what the variance adapter used; string metadata ``format`` = "anitalker-motion", ``version``, ``fps``,
``variant``, ``seeds`` (JSON list) and ``note``. Version 1 files (before the variance attributes) load too.
Safetensors cannot run code, so loading a file from anyone is safe, and tensors round-trip bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

from ..errors import MotionError
from ..types import ATTRIBUTE_WIDTHS, FPS, Motion, check_motion

FORMAT = "anitalker-motion"
VERSION = 2
"""2: the variance attributes pose_deg, location, scale; 1: latents, alpha0 and metadata only."""
OPTIONAL_TENSORS = ("alpha0",) + tuple(ATTRIBUTE_WIDTHS)


def save_motion(motion: Motion, path: Union[str, Path]) -> Path:
    """Write ``motion`` to ``path`` (parent folders created); returns the path. Written atomically."""
    from safetensors.torch import save_file

    check_motion(motion)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: getattr(motion, name).detach().cpu().contiguous() for name in ("latents",) + OPTIONAL_TENSORS
               if getattr(motion, name) is not None}
    meta = {
        "format": FORMAT,
        "version": str(VERSION),
        "fps": repr(float(motion.fps)),
        "variant": str(motion.variant),
        "seeds": json.dumps([int(s) for s in motion.seeds]),
        "note": str(motion.note),
    }
    tmp = path.with_name(path.name + ".partial")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(path)  # never leave a half-written file under the real name
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _not_motion(path: Path, why: str) -> MotionError:
    return MotionError(f"{path} is not an AniTalker motion file ({why}); choose a file written by Save Motion")


def load_motion(path: Union[str, Path]) -> Motion:
    """Read a file written by ``save_motion``; MotionError for a missing, foreign or damaged file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise MotionError(f"motion file {path} does not exist; check the name or save a motion first")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            if meta.get("format") != FORMAT:
                raise _not_motion(path, f"its metadata format is {meta.get('format')!r}")
            if "latents" not in keys:
                raise _not_motion(path, f"it holds {sorted(keys)[:5]} but no 'latents'")
            tensors = {name: f.get_tensor(name) for name in ("latents",) + OPTIONAL_TENSORS if name in keys}
    except MotionError:
        raise
    except Exception as exc:  # safetensors raises its own error types (and OSError) for damaged files
        raise MotionError(f"could not read motion file {path}: {exc}; it may be damaged or not a .safetensors "
                          "file") from exc
    try:
        version = int(meta.get("version", "0"))
        fps = float(meta.get("fps", FPS))
        seeds = tuple(int(s) for s in json.loads(meta.get("seeds", "[]")))
    except (ValueError, TypeError) as exc:
        raise MotionError(f"motion file {path} has damaged metadata ({exc}); save the motion again") from exc
    if version > VERSION:
        raise MotionError(f"motion file {path} has format version {version}, newer than this pack understands "
                          f"({VERSION}); update anitalker-comfy")
    try:
        return Motion(fps=fps, variant=meta.get("variant", ""), seeds=seeds, note=meta.get("note", ""), **tensors)
    except MotionError as exc:
        raise MotionError(f"motion file {path}: {exc} (the file is damaged or was not written by Save Motion)") \
            from None
