"""The models one process animates with, loaded by variant when a clip first needs them: the weight files each
variant reads (checked, and fetched when allowed, before anything loads), the renderer, a motion generator per
variant, the speech encoder, and upscale and face models by file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Optional, Union

import torch

from ..device_policy import describe, render_precision, resolve_device
from ..weights.variants import get_variant


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def weight_names(variant: Optional[str]) -> list[str]:
    """The files under the models folder that animating with ``variant`` reads (None: rendering alone)."""
    from ..weights.files import HUBERT_DIR, STAGE1, STAGE2

    if variant is None:
        return [STAGE1]
    return [STAGE1, STAGE2[variant]] + ([HUBERT_DIR] if get_variant(variant).audio == "hubert" else [])


def weight_files(models_dir: Path, variant: Optional[str], allow_download: bool = True,
                 log: Callable[[str], None] = _stderr) -> dict[str, Path]:
    """{name: path} of the variant's weights (None: the renderer's alone), downloaded if missing and allowed; a
    wrong HuBERT fails here, before anything is loaded."""
    from ..audio.features import check_hubert_config
    from ..weights.files import HUBERT_DIR, ensure_files

    files = ensure_files(weight_names(variant), models_dir, allow_download=allow_download, log=log)
    if HUBERT_DIR in files:
        check_hubert_config(files[HUBERT_DIR])
    return files


class LoadedModels:
    """The weights one process animates with, each loaded when a clip first needs it.

    One instance has one device and render precision; it holds the renderer, a motion generator per variant,
    the speech encoder (HuBERT or MFCC) and upscale and face-restoration models by file. ``keep=False`` is for a
    single clip: every model is handed out without being held, so the speech encoder and the generator are freed
    once used and rendering has their memory.
    """

    def __init__(self, models_dir: Path, device: Union[str, torch.device] = "auto", precision: str = "auto",
                 allow_download: bool = True, keep: bool = True,
                 log: Callable[[str], None] = _stderr) -> None:
        self.models_dir = Path(models_dir)
        self.device = resolve_device(device)
        self.precision = render_precision(precision, self.device)
        self.allow_download, self.keep, self.log = allow_download, keep, log
        self._files: dict[Optional[str], dict[str, Path]] = {}
        self._models: dict[tuple, object] = {}

    def files(self, variant: Optional[str]) -> dict[str, Path]:
        """The weights of ``variant`` (None: the renderer's alone), checked (and fetched) once per process."""
        if variant not in self._files:
            self._files[variant] = weight_files(self.models_dir, variant, self.allow_download, self.log)
        return self._files[variant]

    def _get(self, key: tuple, load: Callable[[], object]):
        if key in self._models:
            return self._models[key]
        model = load()
        if self.keep:
            self._models[key] = model
        return model

    def renderer(self, variant: Optional[str] = None):
        from .checkpoints import load_stage1
        from ..weights.files import STAGE1

        def load():
            self.log(describe(self.device, self.precision))  # once the inputs are known to be usable
            return load_stage1(self.files(variant)[STAGE1], device=self.device, precision=self.precision.name)

        return self._get(("renderer",), load)

    def generator(self, variant: str):
        from .checkpoints import load_stage2
        from ..weights.files import STAGE2

        return self._get(("generator", variant),
                         lambda: load_stage2(self.files(variant)[STAGE2[variant]], device=self.device))

    def speech_encoder(self, variant: str):
        from ..audio.features import HubertFeatures, MfccFeatures
        from ..weights.files import HUBERT_DIR

        if get_variant(variant).audio == "hubert":
            return self._get(("hubert",), lambda: HubertFeatures(self.files(variant)[HUBERT_DIR], device=self.device))
        return self._get(("mfcc",), MfccFeatures)

    def upscaler(self, path: Path):
        """The upscale or face-restoration model in ``path`` (spandrel tells which)."""
        from ..image.upscale import load_upscale_model

        path = Path(path).resolve()
        return self._get(("upscaler", path), lambda: load_upscale_model(path, device=self.device))
