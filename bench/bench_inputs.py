"""What the benches share: speech of a given length, models of the real sizes with random weights, and the
hidden options and call of a case run in its own process (so its peak memory is its own)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import wave
from pathlib import Path

from tests.support.golden import MEDIA, REPO


def speech_of_length(path: Path, seconds: float) -> Path:
    """statue.wav repeated (and cut) to ``seconds``, as 16-bit PCM."""
    with wave.open(str(MEDIA / "statue.wav"), "rb") as src:
        params, rate = src.getparams(), src.getframerate()
        pcm = src.readframes(src.getnframes())
    need = int(seconds * rate) * params.sampwidth * params.nchannels
    with wave.open(str(path), "wb") as dst:
        dst.setparams(params)
        dst.writeframes((pcm * (need // len(pcm) + 1))[:need])
    return path


def hubert_of_real_size(folder: Path) -> Path:
    """A random-weight HuBERT with chinese-hubert-large's shape (24 layers of 1024, 4096 wide feed-forward)."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    config = HubertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                          do_stable_layer_norm=True, feat_extract_norm="layer")
    HubertModel(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    return folder


def checkout(revision: str, folder: Path) -> Path:
    """The package of ``revision`` (and the pyproject.toml its version comes from) unpacked into ``folder``;
    nothing else in the repository changes."""
    archive = subprocess.run(["git", "archive", "--format=tar", revision, "anitalker_core", "pyproject.toml"],
                             cwd=REPO, check=True, capture_output=True).stdout
    folder.mkdir(parents=True, exist_ok=True)
    archive_path = folder / "code.tar"
    archive_path.write_bytes(archive)
    with tarfile.open(archive_path) as tar:
        tar.extractall(folder, filter="data")
    return folder


CHILD_INPUTS = ("path", "audio", "portrait", "models", "workdir")


def add_child_options(ap: argparse.ArgumentParser) -> None:
    """The options a bench passes to one case it runs in a child process (hidden from --help)."""
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in CHILD_INPUTS:
        ap.add_argument(f"--{name}", help=argparse.SUPPRESS)


def run_child(module: str, what: str, options: list[str]):
    """Run ``python -m module --child OPTIONS`` in a fresh process from the repository root; its last line of
    output is its JSON result."""
    proc = subprocess.run([sys.executable, "-m", module, "--child", *options], cwd=REPO, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
