"""Reading a weight file without executing anything in it: what it holds, tensors in plain containers.

Pickled files (.ckpt/.pt/.pth/.bin) are read with ``torch.load(weights_only=True)``, so a file crafted to run code
on unpickling is refused instead of executed; ``.safetensors`` files are read with safetensors. Every failure names
the file and what was found in it. The pack's checkpoints and the upscale and face models share this reader and
differ only in how their messages name a file and where a good copy comes from (``Source``).
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch

from ..errors import CheckpointError

PathLike = Union[str, Path]
STAGE1_PREFIX = "lia."
"""The prefix some released copies of stage1.ckpt put before every weight name."""
EMA_PREFIX = "ema_model."
"""The prefix of the averaged weights in a stage-2 checkpoint (the ones inference uses)."""
SNIFF_BYTES = 48
"""How much of a file's start is read to tell a text file (an error page saved by a failed download) from weights."""


@dataclass(frozen=True)
class Source:
    """How a reader's messages name its files (``noun``) and where a file holding tensors only comes from."""

    noun: str
    good_copy: str


def read_weights(path: PathLike, source: Source) -> object:
    """What ``path`` holds (dicts, lists and tensors), read without running code from it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{source.noun} {path} does not exist; put the file there or pick another one")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{source.noun} {path} is empty (0 bytes); the download or copy failed, fetch it again")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{source.noun} {path} is not a valid .safetensors file ({exc}); it may be "
                                  "truncated, download it again") from exc
    text = _text_start(path)
    if text is not None:
        raise CheckpointError(f"{source.noun} {path} is a text file, not weights (it begins {text!r}); a failed "
                              "download saves an error page like this, download the file again")
    return _read_pickle(path, size, source)


def _read_pickle(path: Path, size: int, source: Source) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if "Weights only load failed" in message or "Unsupported" in message or "global" in message.lower():
            found = _refused_global(message)
            what = f"a pickled {found}; " if found else ""
            raise CheckpointError(
                f"refused to load {path}: it contains pickled objects other than tensors ({what}code could run on "
                f"loading). {source.good_copy}, or convert a trusted copy to .safetensors"
            ) from exc
        raise CheckpointError(f"{source.noun} {path} ({size} bytes) is corrupt or truncated ({exc}); "
                              "download it again") from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{source.noun} {path} ({size} bytes) could not be read: it is truncated or not a "
                              f"PyTorch checkpoint ({type(exc).__name__}: {str(exc)[:200]}); download it again"
                              ) from exc


def _refused_global(message: str) -> str:
    """The class or function ``torch.load`` refused to unpickle, as its message names it ('' if it names none)."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    return found.group(1) if found else ""


def _text_start(path: Path) -> Optional[str]:
    """The start of ``path`` if it is text, None for anything else: a pickle begins with its protocol byte 0x80, a
    zip archive (torch.save's format) with 'PK'."""
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    if not head or head[0] == 0x80 or head.startswith(b"PK"):
        return None
    text = head.decode("utf-8", errors="ignore")  # the last character may be cut in two
    return text if text and all(c.isprintable() or c in "\r\n\t" for c in text) else None


def describe_keys(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def checkpoint_kind(keys) -> str:
    """Which of AniTalker's models a set of keys belongs to, or "unknown model"."""
    keys = list(keys)
    if any(k.startswith(EMA_PREFIX) or k == "x_T" for k in keys):
        return "stage-2 motion generator"
    if any(k.startswith(("enc.", "dec.", STAGE1_PREFIX)) for k in keys):
        return "stage-1 renderer"
    if any(k.startswith(("coarse_decoder.", "down_sample1.")) for k in keys):
        return "stage-2 motion generator"
    if any(k.startswith(("encoder.layers.", "feature_extractor.", "hubert.")) for k in keys):
        return "HuBERT audio encoder"
    return "unknown model"
