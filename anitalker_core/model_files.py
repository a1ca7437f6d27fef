"""Where the weights live, what they are called, and fetching them when the user is online."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Optional

from .errors import CheckpointError, MissingWeightsError
from .variants import VARIANTS

STAGE1 = "stage1.ckpt"
STAGE2 = {v.name: v.file_name for v in VARIANTS.values()}
"""{variant: released file name}, read from the variant registry."""
HUBERT_DIR = "chinese-hubert-large"
HUBERT_FILES = ("config.json", "preprocessor_config.json", "pytorch_model.bin")
CKPT_REPO = "taocode/anitalker_ckpts"
HUBERT_REPO = "TencentGameMate/chinese-hubert-large"
FOLDER_NAME = "anitalker"


def default_models_dir() -> Path:
    """ComfyUI/models/anitalker when this pack sits in ComfyUI/custom_nodes, else ./models/anitalker."""
    env = os.environ.get("ANITALKER_MODELS")
    if env:
        return Path(env)
    pack = Path(__file__).resolve().parents[1]
    if pack.parent.name == "custom_nodes" and (pack.parent.parent / "models").is_dir():
        return pack.parent.parent / "models" / FOLDER_NAME
    return Path.cwd() / "models" / FOLDER_NAME


def source_of(name: str) -> str:
    repo = HUBERT_REPO if name == HUBERT_DIR else CKPT_REPO
    return f"https://huggingface.co/{repo}"


def resolve_inside(models_dir: Path, name: str) -> Path:
    """models_dir/name, refusing names that would leave the folder (``..``, absolute paths)."""
    root = Path(models_dir).resolve()
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise CheckpointError(f"model name {name!r} must be a file name inside {root}, without '..' or a full path")
    path = (root / name).resolve()
    if root != path and root not in path.parents:
        raise CheckpointError(f"model name {name!r} points outside the models folder {root}")
    return path


def is_present(path: Path, name: str) -> bool:
    if name == HUBERT_DIR:
        return (path / "config.json").is_file() and any(
            (path / f).is_file() for f in ("pytorch_model.bin", "model.safetensors"))
    return path.is_file() and path.stat().st_size > 0


def missing_message(missing: list[str], models_dir: Path) -> str:
    lines = [f"AniTalker weights are missing. Put these in {Path(models_dir).resolve()}:"]
    for name in missing:
        what = "folder with config.json, preprocessor_config.json, pytorch_model.bin" if name == HUBERT_DIR else "file"
        lines.append(f"  - {name} ({what}) from {source_of(name)}")
    lines.append("or run once with internet access to download them automatically.")
    return "\n".join(lines)


def _download(name: str, models_dir: Path) -> None:
    from huggingface_hub import hf_hub_download, snapshot_download

    if name == HUBERT_DIR:
        snapshot_download(HUBERT_REPO, local_dir=str(models_dir / HUBERT_DIR), allow_patterns=list(HUBERT_FILES))
    else:
        hf_hub_download(CKPT_REPO, name, local_dir=str(models_dir))


def ensure_files(names: Iterable[str], models_dir: Path, allow_download: bool = True,
                 log: Optional[Callable[[str], None]] = None) -> dict[str, Path]:
    """{name: path} for every requested weight, downloading missing ones when allowed and possible."""
    models_dir = Path(models_dir)
    names = list(names)
    paths = {n: resolve_inside(models_dir, n) for n in names}
    missing = [n for n in names if not is_present(paths[n], n)]
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    if missing and allow_download and not offline:
        models_dir.mkdir(parents=True, exist_ok=True)
        for name in list(missing):
            if log:
                log(f"downloading {name} from {source_of(name)} into {models_dir} ...")
            try:
                _download(name, models_dir)
            except Exception as exc:  # network errors come in many types; all mean "not available now"
                if log:
                    log(f"could not download {name}: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            if is_present(paths[name], name):
                missing.remove(name)
    if missing:
        raise MissingWeightsError(missing_message(missing, models_dir))
    return paths
