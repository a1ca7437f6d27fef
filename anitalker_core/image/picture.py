"""A portrait picture read from a file, as the command takes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import AniTalkerError


def load_picture(path: Path) -> torch.Tensor:
    """A picture file (PNG, JPEG, WebP, ...) -> (H,W,3|4) float32 0..1, alpha kept where the file has one."""
    if not path.is_file():
        raise AniTalkerError(f"portrait {path} does not exist")
    try:
        with Image.open(path) as im:
            im.load()
            has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
            mode = "RGBA" if has_alpha else "RGB"
            arr = np.asarray(im.convert(mode))
    except (UnidentifiedImageError, OSError) as exc:
        raise AniTalkerError(f"could not read portrait {path}: {exc}; give a PNG, JPEG or WebP image") from exc
    return torch.from_numpy(arr.copy()).float().div_(255)
