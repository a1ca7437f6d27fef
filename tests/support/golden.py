"""Rebuild the parity fixtures' weights by their documented rule and write them in the official layouts.

The fixtures ship in ``tests/fixtures/`` (``ANITALKER_GOLDEN`` / ``ANITALKER_MEDIA`` point elsewhere).
"""

from __future__ import annotations

import json
import os
import zlib
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
GOLDEN = Path(os.environ.get("ANITALKER_GOLDEN") or FIXTURES / "golden").resolve()
MEDIA = Path(os.environ.get("ANITALKER_MEDIA") or FIXTURES / "media").resolve()


@lru_cache(maxsize=1)
def fixture() -> dict:
    return json.loads((GOLDEN / "fixture.json").read_text())


def seed() -> int:
    return int(fixture()["seed"])


def manifest(name: str) -> dict:
    """name: "stage1" or a stage-2 variant such as "hubert_pose_only"."""
    file = "stage1_manifest.json" if name == "stage1" else f"stage2_{name}_manifest.json"
    return json.loads((GOLDEN / file).read_text())


@lru_cache(maxsize=1)
def _constants() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDEN / "stage1_constants.safetensors"))


def rule_tensor(key: str, spec: dict, fixture_seed: int) -> torch.Tensor:
    shape = spec["shape"]
    mode = spec["mode"]
    if mode == "zero_int":
        return torch.zeros(shape, dtype=torch.int64)
    if mode == "const":
        return _constants()[key].clone()
    g = torch.Generator().manual_seed((zlib.crc32(key.encode()) + fixture_seed) % 2**63)
    u = torch.rand(shape, generator=g, dtype=torch.float32)
    if mode == "uniform":
        return (2 * u - 1) * spec["scale"]
    if mode == "one_plus":
        return 1 + (2 * u - 1) * spec["scale"]
    if mode == "running_var":
        return 0.5 + u
    raise ValueError(f"unknown weight mode {mode!r} for {key}")


@lru_cache(maxsize=None)
def _state_dict(name: str) -> dict[str, torch.Tensor]:
    s = seed()
    return {k: rule_tensor(k, v, s) for k, v in manifest(name).items()}


def state_dict(name: str) -> dict[str, torch.Tensor]:
    """The full official state dict (every key of the manifest) built by the weight rule.

    Built once per name and process; callers get their own dict but share the tensors, which nobody mutates
    (loading copies them into the model)."""
    return dict(_state_dict(name))


def write_stage1(path: Path, prefix: str = "") -> Path:
    """Official stage1.ckpt layout: a flat dict of tensors, optionally with every key prefixed ``lia.``."""
    sd = {prefix + k: v for k, v in state_dict("stage1").items()}
    torch.save(sd, path)
    return path


def write_stage2(path: Path, variant: str) -> Path:
    """Official stage-2 layout: a flat dict with ``x_T``, ``model.*`` and ``ema_model.*``."""
    torch.save(state_dict(variant), path)
    return path


class Checkpoints:
    """The fixture weights as official-layout files, each written on its first request and the same file for every
    later one: a run writes each checkpoint (hundreds of MB) once, whichever tests read it. Nobody writes into
    these files; tests that need a damaged or rewrapped copy make their own.

    Processes may share the folder (pytest-xdist's workers do): on POSIX a lock file per checkpoint makes the first
    process to ask write it while the others wait for it; where there is no ``fcntl`` each process should have a
    folder of its own."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _written(self, path: Path, write) -> Path:
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.with_name(path.name + ".lock")):
            if not path.exists():  # not written by another process while this one waited
                partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
                write(partial)
                partial.rename(path)
        return path

    def file(self, name: str, write) -> Path:
        """Another large test file kept with these (e.g. a face model of the real size): ``write(path)`` makes it,
        once for the run."""
        return self._written(self.folder / name, write)

    def stage1(self, prefix: str = "") -> Path:
        """``stage1.ckpt``, every key after ``prefix`` (``"lia."`` as some released copies have it)."""
        from anitalker_core.weights.files import STAGE1

        return self._written(self.folder / (prefix.rstrip(".") or "plain") / STAGE1,
                             lambda path: write_stage1(path, prefix))

    def stage2(self, variant: str) -> Path:
        """The stage-2 file of ``variant`` under its released name."""
        from anitalker_core.weights.files import STAGE2

        return self._written(self.folder / STAGE2[variant], lambda path: write_stage2(path, variant))

    def models_folder(self, folder: Path, stage2: tuple[str, ...], prefix: str = "lia.") -> Path:
        """``folder`` as a user fills it (``stage1.ckpt`` and the ``stage2`` variants under their released names),
        its files links to these."""
        from anitalker_core.weights.files import STAGE1, STAGE2

        folder.mkdir(parents=True, exist_ok=True)
        (folder / STAGE1).symlink_to(self.stage1(prefix))
        for variant in stage2:
            (folder / STAGE2[variant]).symlink_to(self.stage2(variant))
        return folder


@contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """Holds an exclusive lock on the file ``lock`` (released when the process ends, however it ends)."""
    try:
        import fcntl
    except ImportError:  # no POSIX locks: the folder is this process's alone
        yield
        return
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def renderer():
    """The stage-1 model with the fixtures' weights, loaded the way the pack loads a file (strict, eval mode)."""
    from anitalker_core.models.checkpoints import stage1_from_state_dict

    return stage1_from_state_dict(state_dict("stage1"))


def generator(variant: str):
    """A stage-2 model with the fixtures' weights (its EMA copy, strictly loaded, eval mode)."""
    from anitalker_core.models.checkpoints import stage2_from_state_dict

    return stage2_from_state_dict(state_dict(variant))


def official_rng_draws() -> dict[str, int]:
    """{variant: N}: the uniform draws the official demo makes before its start noise (for seed compatibility)."""
    return {name: int(n) for name, n in fixture()["official_rng_draws"].items()}


def io(name: str) -> dict[str, torch.Tensor]:
    """name: "stage1", "stage2" or "hubert"."""
    return load_file(str(GOLDEN / f"{name}_io.safetensors"))


def write_hubert_folder(folder: Path, layers: int = 12, width: int = 768, model_type: str = "hubert") -> Path:
    """A speech-model folder whose config.json says ``layers`` x ``width`` (default: a base-size HuBERT).

    The weights file is a placeholder: the loaders must refuse a wrong size from the config, before reading it.
    """
    from transformers import HubertConfig, Wav2Vec2Config

    config_class = HubertConfig if model_type == "hubert" else Wav2Vec2Config
    folder.mkdir(parents=True, exist_ok=True)
    config_class(hidden_size=width, num_hidden_layers=layers, num_attention_heads=max(1, width // 64)).save_pretrained(folder)
    from safetensors.torch import save_file

    save_file({"placeholder": torch.zeros(1)}, str(folder / "model.safetensors"))
    return folder
