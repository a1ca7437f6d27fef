"""The headless command end to end: official-layout checkpoints in, an mp4 with audio out."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import wave as wave_module

import av
import numpy as np
import pytest
import torch
import torchaudio

from anitalker_core.device_policy import describe, render_precision
from anitalker_core.model_files import hub_reachable
from golden import MEDIA, REPO, write_hubert_folder, write_stage1, write_stage2, write_upscaler
from hub_servers import empty_hub, silent_hub

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


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    """0.5 s of the recording (12 frames): enough to check outputs without rendering for long."""
    with wave_module.open(str(MEDIA / "statue.wav"), "rb") as f:
        sr = f.getframerate()
        pcm = torch.frombuffer(bytearray(f.readframes(int(0.5 * sr))), dtype=torch.int16).float() / 32768
    path = tmp_path_factory.mktemp("audio") / "short.wav"
    write_wav(path, pcm[None], sr)
    return path, pcm.numel() / sr


def write_wav(path, wave, sr):
    """16-bit PCM wav writer (torchaudio 2.9+ needs torchcodec for file IO; the stdlib does this fine)."""
    pcm = (wave.clamp(-1, 1) * 32767).round().to(torch.int16).T.contiguous()
    with wave_module.open(str(path), "wb") as f:
        f.setnchannels(wave.shape[0])
        f.setsampwidth(2)
        f.setframerate(sr)
        f.writeframes(pcm.numpy().tobytes())


def run_cli(*args, env_extra=None):
    """env_extra: variables to set; a value of None removes the variable."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    env.update(env_extra or {})
    env = {k: v for k, v in env.items() if v is not None}
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


def test_paste_back_upscale_and_frames_dir_in_one_run(models_dir, short_clip, tmp_path):
    pytest.importorskip("spandrel")
    from PIL import Image

    audio, seconds = short_clip
    portrait = tmp_path / "wide.png"
    picture = Image.open(MEDIA / "monalisa.jpg").convert("RGB")
    canvas = Image.new("RGB", (700, 600), (30, 60, 90))
    canvas.paste(picture, (150, 40))
    canvas.save(portrait)
    out, frames_dir = tmp_path / "out.mp4", tmp_path / "frames"
    proc = run_cli(
        "--portrait", str(portrait), "--audio", str(audio), "--out", str(out), "--frames-dir", str(frames_dir),
        "--paste-back", "--upscale-model", str(write_upscaler(tmp_path / "RealESRGAN_x2.pth")),
        "--variant", VARIANT, "--models", str(models_dir), "--steps", "2", "--device", "cpu", "--offline",
    )
    assert proc.returncode == 0, proc.stderr
    assert "upscale model: RealESRGAN_x2.pth" in proc.stderr and "700x600" in proc.stderr
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        assert (video.width, video.height) == (700, 600)
        assert container.streams.audio
        frames = sum(1 for _ in container.decode(video=0))
    assert abs(frames / 25 - seconds) <= 1 / 25 + 1e-6
    pngs = sorted(frames_dir.glob("frame_*.png"))
    assert len(pngs) == frames and Image.open(pngs[0]).size == (700, 600)
    assert (frames_dir / "audio.wav").is_file()
    corner = np.asarray(Image.open(pngs[-1]))[:20, :20]  # far from the head: the picture itself
    assert np.abs(corner.astype(int) - [30, 60, 90]).max() <= 1


def test_frames_dir_alone_and_clear_errors(models_dir, short_clip, tmp_path):
    audio, _ = short_clip
    base = ("--portrait", str(MEDIA / "aiface2.png"), "--audio", str(audio), "--variant", VARIANT,
            "--models", str(models_dir), "--steps", "2", "--device", "cpu", "--offline")
    proc = run_cli(*base)
    assert proc.returncode == 2 and "--out" in proc.stderr and "--frames-dir" in proc.stderr
    proc = run_cli(*base, "--out", str(tmp_path / "x.mp4"), "--upscale-model", str(tmp_path / "missing.pth"))
    assert proc.returncode == 2 and "missing.pth" in proc.stderr and "does not exist" in proc.stderr
    proc = run_cli(*base, "--frames-dir", str(tmp_path / "seq"), "--crop", "full", "--paste-back")
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "seq").glob("frame_*.png"))) == 12


def assert_says_what_to_do(stderr, models):
    assert stderr.startswith("error: AniTalker weights are missing"), stderr
    for part in ("stage1.ckpt", "stage2_audio_only_hubert.ckpt", "chinese-hubert-large", str(models),
                 "--models DIR", "--offline", "mfcc_pose_only", "mfcc_full_control"):
        assert part in stderr, part
    assert "Traceback" not in stderr and "Retry" not in stderr and "thrown while requesting" not in stderr


@pytest.mark.parametrize("hub", ["silent", "default"])
def test_no_network_means_a_clear_message_in_seconds_and_nothing_left_behind(tmp_path, hub):
    """The first command of a new user without network: no --offline, no HF_HUB_OFFLINE, no weights.

    "silent" stands in for a network that swallows requests (the probe's timeout is the worst case);
    "default" is this machine's own network, when it has none.
    """
    if hub == "default" and hub_reachable():
        pytest.skip("the hub is reachable from here; the silent hub covers the offline case")
    models = tmp_path / "models"
    with silent_hub() as url:
        start = time.perf_counter()
        proc = run_cli("--portrait", "examples/monalisa.jpg", "--audio", "examples/statue.wav",
                       "--out", str(tmp_path / "x.mp4"), "--models", str(models),
                       env_extra={"HF_HUB_OFFLINE": None, "HF_ENDPOINT": url if hub == "silent" else None})
        seconds = time.perf_counter() - start
    assert proc.returncode == 2, proc.stderr
    assert seconds < 10, f"{seconds:.1f} s"
    assert "cannot be reached" in proc.stderr and len(proc.stderr.splitlines()) <= 8, proc.stderr
    assert_says_what_to_do(proc.stderr, models)
    assert not models.exists() and not (tmp_path / "x.mp4").exists()


def test_a_failing_download_leaves_the_models_folder_as_it_was(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "readme.txt").write_text("the user's own file")
    with empty_hub() as url:
        proc = run_cli("--portrait", "examples/monalisa.jpg", "--audio", "examples/statue.wav",
                       "--out", str(tmp_path / "x.mp4"), "--models", str(models),
                       env_extra={"HF_HUB_OFFLINE": None, "HF_ENDPOINT": url})
    assert proc.returncode == 2, proc.stderr
    for name in ("stage1.ckpt", "stage2_audio_only_hubert.ckpt", "chinese-hubert-large"):
        assert proc.stderr.count(f"could not download {name}: ") == 1, proc.stderr
    assert "(download failed)" in proc.stderr
    assert_says_what_to_do(proc.stderr[proc.stderr.index("error: "):], models)
    assert [p.name for p in models.rglob("*")] == ["readme.txt"]  # no .cache/huggingface, no .lock files


def test_a_hubert_of_the_wrong_size_is_refused_before_anything_loads(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    # placeholders: the refusal must come from the HuBERT config before any checkpoint is read
    for name in ("stage1.ckpt", "stage2_audio_only_hubert.ckpt"):
        (models / name).write_bytes(b"not read")
    write_hubert_folder(models / "chinese-hubert-large", layers=12, width=768)
    proc = run_cli("--portrait", "examples/monalisa.jpg", "--audio", "examples/statue.wav",
                   "--out", str(tmp_path / "x.mp4"), "--models", str(models), "--offline")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: the HuBERT folder ") and "Traceback" not in proc.stderr
    assert "12 layers of width 768" in proc.stderr and "24 layers of width 1024" in proc.stderr
    assert "TencentGameMate/chinese-hubert-large" in proc.stderr


def test_calm_silence_calms_the_pause_of_the_motion_it_saves_and_renders(models_dir, tmp_path):
    from anitalker_core.motion_io import load_motion
    from speech_motion import RATE, read_speech

    speech = torch.from_numpy(read_speech())
    noise = torch.randn(int(0.8 * RATE), generator=torch.Generator().manual_seed(0)) * 1e-3  # room noise
    clip = torch.cat([speech[int(0.2 * RATE):int(0.6 * RATE)], noise, speech[int(1.0 * RATE):int(1.4 * RATE)]])
    audio, out, saved = tmp_path / "pause.wav", tmp_path / "out.mp4", tmp_path / "take.safetensors"
    write_wav(audio, clip[None], RATE)
    proc = run_cli(
        "--portrait", str(MEDIA / "monalisa.jpg"), "--audio", str(audio), "--out", str(out), "--variant", VARIANT,
        "--models", str(models_dir), "--steps", "3", "--device", "cpu", "--offline",
        "--calm-silence", "1", "--save-motion", str(saved),
    )
    assert proc.returncode == 0, proc.stderr
    assert "1 pause(s): 0.4" in proc.stderr and "calmed (strength 1" in proc.stderr
    motion = load_motion(saved)
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == motion.num_frames  # the saved motion was rendered
    step = (motion.latents[0, 1:] - motion.latents[0, :-1]).norm(dim=-1)
    assert float(step[17:22].mean()) < 0.3 * float(step[:8].mean())  # deep in the pause vs the first words


def test_calm_silence_strength_is_checked_before_any_work(tmp_path):
    proc = run_cli("--portrait", "p.png", "--audio", "a.wav", "--out", str(tmp_path / "x.mp4"),
                   "--calm-silence", "2")
    assert proc.returncode == 2 and "--calm-silence: expected a number from 0 to 1, got '2'" in proc.stderr
