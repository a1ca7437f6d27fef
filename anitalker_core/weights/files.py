"""Where the weights live, what they are called, and fetching them when the user is online."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from ..errors import CheckpointError, MissingWeightsError
from .variants import VARIANTS

logger = logging.getLogger(__name__)

STAGE1 = "stage1.ckpt"
STAGE2 = {v.name: v.file_name for v in VARIANTS.values()}
"""{variant: released file name}, read from the variant registry."""
HUBERT_DIR = "chinese-hubert-large"
HUBERT_WEIGHTS = ("pytorch_model.bin", "model.safetensors")
"""The weights file of a HuBERT folder, as released (first) or converted."""
HUBERT_FILES = ("config.json", "preprocessor_config.json", HUBERT_WEIGHTS[0])
"""What is downloaded into the HuBERT folder."""
CKPT_REPO = "taocode/anitalker_ckpts"
HUBERT_REPO = "TencentGameMate/chinese-hubert-large"
FOLDER_NAME = "anitalker"
DOWNLOAD_MB = {STAGE1: 188, HUBERT_DIR: 1260, **{v.file_name: v.download_mb for v in VARIANTS.values()}}
"""Sizes on the hub, so a user can judge a download before starting it."""
HUB_PROBE_SECONDS = 2.5


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


def resolve_inside(folder: Path, name: str) -> Path:
    """folder/name for a name picked from a list (a model, a saved motion), refusing names that would leave the
    folder (``..``, absolute paths).

    The name is checked, not where a file leads: a link the user put into the folder (weights kept on another
    disk) is theirs to make, as in ComfyUI's own model folders."""
    root = Path(folder).resolve()
    if not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise CheckpointError(f"the name {name!r} must be a file name inside {root}, without '..' or a full path")
    return root / name


def is_present(path: Path, name: str) -> bool:
    if name == HUBERT_DIR:
        return (path / "config.json").is_file() and any(
            (path / f).is_file() for f in HUBERT_WEIGHTS)
    return path.is_file() and path.stat().st_size > 0


def download_size(name: str) -> str:
    """'188 MB', '1.26 GB', or '' for a name the hub does not list."""
    mb = DOWNLOAD_MB.get(name)
    return "" if mb is None else f"{mb / 1000:.2f} GB" if mb >= 1000 else f"{mb} MB"


def missing_message(missing: list[str], models_dir: Path, reason: str = "") -> str:
    lines = [f"AniTalker weights are missing{f' ({reason})' if reason else ''}. Put these in "
             f"{Path(models_dir).resolve()}:"]
    for name in missing:
        what = f"folder with {', '.join(HUBERT_FILES)}" if name == HUBERT_DIR else "file"
        size = download_size(name)
        lines.append(f"  - {name} ({what}{', ' + size if size else ''}) from {source_of(name)}")
    lines.append("or point --models DIR at a folder that has them. Online, the command downloads missing files "
                 "into that folder itself; --offline never tries.")
    if HUBERT_DIR in missing:
        lines.append("The mfcc_pose_only and mfcc_full_control variants (--variant mfcc_full_control) need no HuBERT "
                     f"download ({download_size(HUBERT_DIR)} less), at some cost in lip-sync accuracy.")
    return "\n".join(lines)


def hub_endpoint() -> str:
    """The hub huggingface_hub talks to (``HF_ENDPOINT`` for mirrors)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` set to a true value: the user asked for no network at all."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no", "off")


def hub_reachable(endpoint: Optional[str] = None, timeout: float = HUB_PROBE_SECONDS) -> bool:
    """One HEAD request to the hub, name lookup included, within ``timeout`` seconds; any HTTP answer counts.

    huggingface_hub retries a dead network for most of a minute per file; this answers in seconds, so an
    offline machine goes straight to the missing-weights message. Proxies come from the environment, as for
    the downloads themselves.
    """
    request = urllib.request.Request(endpoint or hub_endpoint(), method="HEAD")
    answer: list[bool] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(request, timeout=timeout).close()
            answer.append(True)
        except urllib.error.HTTPError:  # the hub answered, even if not with 200
            answer.append(True)
        except (OSError, ValueError):  # no route, no name, refused, timed out, malformed endpoint
            answer.append(False)

    # urlopen's timeout does not bound the name lookup, so the whole probe runs on a thread we stop waiting for
    thread = threading.Thread(target=probe, name="anitalker-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answer and answer[0])


@contextmanager
def _quiet_hub() -> Iterator[None]:
    """No retry warnings from huggingface_hub (the caller reports a failure in one line); progress bars stay."""
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_log.setLevel(level)


def _tidy_hub_files(local_dir: Path, existed: bool, failed: bool) -> None:
    """Drop the lock files huggingface_hub leaves in a download folder; after a failure, drop its bookkeeping
    folder too (unless it holds a partial download the next attempt resumes) and a folder it created empty."""
    cache = local_dir / ".cache" / "huggingface"
    if cache.is_dir():
        for lock in cache.rglob("*.lock"):
            lock.unlink(missing_ok=True)
        partial = any(f.stat().st_size > 0 for f in cache.rglob("*.incomplete"))
        if failed and not partial:
            shutil.rmtree(cache, ignore_errors=True)
            if (local_dir / ".cache").is_dir() and not any((local_dir / ".cache").iterdir()):
                (local_dir / ".cache").rmdir()
    if failed and not existed and local_dir.is_dir() and not any(local_dir.iterdir()):
        local_dir.rmdir()


def _download(name: str, models_dir: Path) -> None:
    from huggingface_hub import hf_hub_download, snapshot_download

    if name == HUBERT_DIR:
        snapshot_download(HUBERT_REPO, local_dir=str(models_dir / HUBERT_DIR), allow_patterns=list(HUBERT_FILES),
                          endpoint=hub_endpoint())
    else:
        hf_hub_download(CKPT_REPO, name, local_dir=str(models_dir), endpoint=hub_endpoint())


def _fetch(name: str, models_dir: Path, log: Optional[Callable[[str], None]]) -> bool:
    """Download one weight into models_dir; True when it is there afterwards. Failures cost one log line."""
    local_dir = models_dir / HUBERT_DIR if name == HUBERT_DIR else models_dir
    existed = {d: d.is_dir() for d in (models_dir, local_dir)}
    if log:
        size = download_size(name)
        log(f"downloading {name}{f' ({size})' if size else ''} from {source_of(name)} into {models_dir} ...")
    models_dir.mkdir(parents=True, exist_ok=True)
    ok = False
    try:
        with _quiet_hub():
            _download(name, models_dir)
        ok = is_present(resolve_inside(models_dir, name), name)
    except Exception as exc:  # network errors come in many types; all mean "not available now"
        first = (str(exc).strip().splitlines() or [""])[0]
        (log or logger.warning)(f"could not download {name}: {type(exc).__name__}: {first}")
    finally:
        for d in dict.fromkeys((local_dir, models_dir)):  # the inner folder first, so the outer may be empty
            _tidy_hub_files(d, existed[d], failed=not ok)
    return ok


def ensure_files(names: Iterable[str], models_dir: Path, allow_download: bool = True,
                 log: Optional[Callable[[str], None]] = None) -> dict[str, Path]:
    """{name: path} for every requested weight, downloading missing ones when allowed and possible.

    Offline (``HF_HUB_OFFLINE``, or the hub not answering one quick probe) nothing is attempted and the error
    comes at once; a download that fails is reported in one line and leaves no hub files behind.
    """
    models_dir = Path(models_dir)
    names = list(names)
    paths = {n: resolve_inside(models_dir, n) for n in names}
    missing = [n for n in names if not is_present(paths[n], n)]
    if not missing:
        return paths
    if not allow_download:
        reason = "downloads are off (--offline)"
    elif hub_offline():
        reason = "HF_HUB_OFFLINE is set: not downloading"
    elif not hub_reachable():
        reason = f"{hub_endpoint()} cannot be reached: not downloading"
    else:
        missing = [n for n in missing if not _fetch(n, models_dir, log)]
        reason = "download failed"
    if missing:
        raise MissingWeightsError(missing_message(missing, models_dir, reason))
    return paths
