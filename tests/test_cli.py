"""The headless command end to end: official-layout checkpoints in, an mp4 with audio out."""

from __future__ import annotations

import os
import subprocess
import sys
import wave as wave_module

import av
import pytest
import torch
import torchaudio

from anitalker_core.device_policy import describe, render_precision
from golden import MEDIA, REPO, write_stage1, write_stage2

VARIANT = "mfcc_full_control"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    write_stage1(d / "stage1.ckpt", prefix="lia.")
    write_stage2(d / "stage2_full_control_mfcc.ckpt", VARIANT)
    return d


@pytest.fixture(scope="module")
def speech_clip(tmp_path_factory):
    """A 2.3 s excerpt of a real recording at 44.1 kHz stereo, to exercise resampling and downmixing."""
    with wave_module.open(str(MEDIA / "statue.wav"), "rb") as f:
        sr = f.getframerate()
        pcm = torch.frombuffer(bytearray(f.readframes(int(2.3 * sr))), dtype=torch.int16).float() / 32768
    wave = torchaudio.functional.resample(pcm[None], sr, 44100).repeat(2, 1)
    path = tmp_path_factory.mktemp("audio") / "clip.wav"
    write_wav(path, wave, 44100)
    return path, wave.shape[1] / 44100


def write_wav(path, wave, sr):
    """16-bit PCM wav writer (torchaudio 2.9+ needs torchcodec for file IO; the stdlib does this fine)."""
    pcm = (wave.clamp(-1, 1) * 32767).round().to(torch.int16).T.contiguous()
    with wave_module.open(str(path), "wb") as f:
        f.setnchannels(wave.shape[0])
        f.setsampwidth(2)
        f.setframerate(sr)
        f.writeframes(pcm.numpy().tobytes())


def run_cli(*args, env_extra=None):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "anitalker_core", "animate", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )


def test_animate_writes_mp4_with_audio_matching_duration(models_dir, speech_clip, tmp_path):
    audio, seconds = speech_clip
    out = tmp_path / "out.mp4"
    proc = run_cli(
        "--portrait", str(MEDIA / "monalisa.jpg"), "--audio", str(audio), "--out", str(out),
        "--variant", VARIANT, "--models", str(models_dir), "--steps", "5", "--seed", "3",
        "--yaw", "10", "--location", "0.4", "--scale", "0.6", "--device", "cpu", "--offline",
    )
    assert proc.returncode == 0, proc.stderr
    # the device and precision it used, resolved by the same policy as the nodes' (see test_nodes)
    cpu = torch.device("cpu")
    assert describe(cpu, render_precision("auto", cpu)) in proc.stderr.splitlines()
    with av.open(str(out)) as container:
        kinds = {s.type for s in container.streams}
        assert kinds == {"video", "audio"}
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert (video.width, video.height) == (256, 256)
        frames = sum(1 for _ in container.decode(video=0))
    assert abs(frames / 25 - seconds) <= 1 / 25 + 1e-6, (frames, seconds)


def test_missing_weights_offline_lists_files_and_exits_nonzero(tmp_path):
    empty = tmp_path / "models"
    empty.mkdir()
    proc = run_cli(
        "--portrait", str(MEDIA / "monalisa.jpg"), "--audio", str(MEDIA / "statue.wav"),
        "--out", str(tmp_path / "x.mp4"), "--variant", "hubert_pose_only", "--models", str(empty), "--offline",
    )
    assert proc.returncode != 0
    for name in ("stage1.ckpt", "stage2_pose_only_hubert.ckpt", "chinese-hubert-large"):
        assert name in proc.stderr
    assert str(empty) in proc.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_bad_portrait_path_is_a_clear_error(models_dir, tmp_path):
    proc = run_cli(
        "--portrait", str(tmp_path / "nope.png"), "--audio", str(MEDIA / "statue.wav"),
        "--out", str(tmp_path / "x.mp4"), "--variant", VARIANT, "--models", str(models_dir), "--offline",
    )
    assert proc.returncode == 2
    assert "nope.png" in proc.stderr and "does not exist" in proc.stderr
