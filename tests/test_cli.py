"""The headless command end to end: official-layout checkpoints in, an mp4 with audio out.

Most runs go through ``cli.main`` in this process (the same code the console script calls, exit status
included); the first command of a user without network runs as a real process, because the hub's settings are
read from the environment when huggingface_hub is imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import wave as wave_module
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
import torchaudio
from conftest import MODELS_VARIANT as VARIANT
from tests.support.golden import MEDIA, REPO, write_hubert_folder
from tests.support.hub_servers import empty_hub, silent_hub
from tests.support.image_models import write_restoreformer, write_upscaler
from tests.support.says import says

from anitalker_core.app import cli
from anitalker_core.device_policy import describe, render_precision
from anitalker_core.video.writers import write_wav


def read_statue(seconds: float) -> tuple[torch.Tensor, int]:
    """The first ``seconds`` of the sample recording as (1, T) float32 at its own rate (16 kHz)."""
    with wave_module.open(str(MEDIA / "statue.wav"), "rb") as f:
        rate = f.getframerate()
        pcm = torch.frombuffer(bytearray(f.readframes(int(seconds * rate))), dtype=torch.int16).float() / 32768
    return pcm[None], rate


@pytest.fixture(scope="module")
def speech_clip(tmp_path_factory):
    """A 0.1 s excerpt (2 frames) of a real recording at 44.1 kHz stereo, to exercise resampling and downmixing."""
    pcm, rate = read_statue(0.1)
    wave = torchaudio.functional.resample(pcm, rate, 44100).repeat(2, 1)
    return write_wav(tmp_path_factory.mktemp("audio") / "clip.wav", wave, 44100), wave.shape[1] / 44100


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    """0.1 s of the recording (2 frames, one batch): enough to check outputs without rendering for long."""
    pcm, rate = read_statue(0.1)
    return write_wav(tmp_path_factory.mktemp("audio") / "short.wav", pcm, rate), pcm.shape[1] / rate


@pytest.fixture
def animate(capsys, monkeypatch):
    """``animate(*args)`` -> (exit status, stderr) of ``anitalker animate ...`` run in this process, with
    HF_HUB_OFFLINE set unless a test says otherwise."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def run(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        try:
            status = cli.main(["animate", *map(str, args)])
        except SystemExit as exc:  # argparse refuses a command line with status 2
            status = exc.code
        return status, capsys.readouterr().err

    return run


@pytest.fixture
def drawn(monkeypatch):
    """The stage-1 encoder and decoder replaced by the stand-ins for one test (tests/support/stand_in.py): what
    such a test checks is the files, their sizes, lengths and sound, not the pixels of the head, which
    test_animate_writes_mp4_with_audio_matching_duration and the parity tests compute for real."""
    from tests.support.stand_in import stand_in_networks

    stand_in_networks(monkeypatch)


def test_animate_writes_mp4_with_audio_matching_duration(animate, models_dir, speech_clip, tmp_path):
    audio, seconds = speech_clip
    out = tmp_path / "out.mp4"
    status, err = animate(
        "--portrait", MEDIA / "monalisa.jpg", "--audio", audio, "--out", out,
        "--variant", VARIANT, "--models", models_dir, "--steps", "5", "--seed", "3",
        "--yaw", "10", "--location", "0.4", "--scale", "0.6", "--device", "cpu", "--offline",
    )
    assert status == 0, err
    # the device and precision it used, resolved by the same policy as the nodes' (see test_nodes)
    cpu = torch.device("cpu")
    assert describe(cpu, render_precision("auto", cpu)) in err.splitlines()
    with av.open(str(out)) as container:
        assert {s.type for s in container.streams} == {"video", "audio"}
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert (video.width, video.height) == (256, 256)
        frames = sum(1 for _ in container.decode(video=0))
    assert abs(frames / 25 - seconds) <= 1 / 25 + 1e-6, (frames, seconds)
    assert not list(tmp_path.glob("*.partial*"))


def test_missing_weights_offline_lists_files_and_exits_nonzero(animate, tmp_path):
    empty = tmp_path / "models"
    empty.mkdir()
    status, err = animate("--portrait", MEDIA / "monalisa.jpg", "--audio", MEDIA / "statue.wav",
                          "--out", tmp_path / "x.mp4", "--variant", "hubert_pose_only", "--models", empty,
                          "--offline")
    assert status == 2
    for name in ("stage1.ckpt", "stage2_pose_only_hubert.ckpt", "chinese-hubert-large", str(empty)):
        assert name in err
    assert not (tmp_path / "x.mp4").exists()


def test_bad_portrait_path_is_a_clear_error(animate, models_dir, tmp_path):
    status, err = animate("--portrait", tmp_path / "nope.png", "--audio", MEDIA / "statue.wav",
                          "--out", tmp_path / "x.mp4", "--variant", VARIANT, "--models", models_dir, "--offline")
    assert status == 2
    assert "nope.png" in err and "does not exist" in err


def test_paste_back_face_restore_upscale_and_frames_dir_in_one_run(drawn, animate, models_dir, short_clip, tmp_path):
    """Face model (its pixels: tests/test_face_restore.py), then upscaler, then paste back: the picture's size,
    and the picture itself away from the head."""
    from PIL import Image

    audio, seconds = short_clip
    portrait = tmp_path / "wide.png"
    canvas = Image.new("RGB", (700, 600), (30, 60, 90))
    canvas.paste(Image.open(MEDIA / "monalisa.jpg").convert("RGB"), (150, 40))
    canvas.save(portrait)
    out, frames_dir = tmp_path / "out.mp4", tmp_path / "frames"
    status, err = animate(
        "--portrait", portrait, "--audio", audio, "--out", out, "--frames-dir", frames_dir,
        "--paste-back", "--upscale-model", write_upscaler(tmp_path / "RealESRGAN_x2.pth"),
        "--face-restore", write_restoreformer(tmp_path / "RestoreFormer.pth"), "--restore-strength", "0",
        "--variant", VARIANT, "--models", models_dir, "--steps", "2", "--device", "cpu", "--offline",
    )
    assert status == 0, err
    assert "RealESRGAN_x2.pth" in err and "700x600" in err
    says(err, "face model: RestoreFormer.pth (RestoreFormer face restoration, 512x512)",
         "face restore and upscale and paste back")
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


def test_frames_dir_alone_and_clear_errors(drawn, animate, models_dir, short_clip, tmp_path):
    audio, seconds = short_clip
    base = ("--portrait", MEDIA / "aiface2.png", "--audio", audio, "--variant", VARIANT,
            "--models", models_dir, "--steps", "2", "--device", "cpu", "--offline")
    status, err = animate(*base)
    assert status == 2 and "--out" in err and "--frames-dir" in err
    status, err = animate(*base, "--out", tmp_path / "x.mp4", "--upscale-model", tmp_path / "missing.pth")
    assert status == 2 and "missing.pth" in err and "does not exist" in err
    status, err = animate(*base, "--frames-dir", tmp_path / "seq", "--crop", "full", "--paste-back")
    assert status == 0, err
    assert len(list((tmp_path / "seq").glob("frame_*.png"))) == int(seconds * 25)


def test_prores_with_alpha_and_a_16_bit_sequence_carry_the_same_matte(drawn, animate, models_dir, tmp_path):
    pcm, rate = read_statue(0.1)  # 2 frames: what is checked here is the files, not the motion
    audio, seconds = write_wav(tmp_path / "tiny.wav", pcm, rate), pcm.shape[1] / rate
    base = ("--portrait", MEDIA / "monalisa.jpg", "--audio", audio, "--variant", VARIANT, "--models", models_dir,
            "--steps", "2", "--device", "cpu", "--offline")
    status, err = animate(*base, "--out", tmp_path / "x.mp4", "--matte", "alpha")
    assert status == 2 and "no alpha channel" in err and ".mov" in err
    status, err = animate(*base, "--out", tmp_path / "x.mp4", "--frame-format", "exr")
    assert status == 2 and "--frames-dir" in err
    out, frames_dir = tmp_path / "clip.mov", tmp_path / "shot"
    status, err = animate(*base, "--paste-back", "--out", out, "--matte", "alpha", "--frames-dir", frames_dir,
                          "--frame-format", "png16", "--first-frame", "1001")
    assert status == 0, err
    pngs = sorted(frames_dir.glob("frame_*.png"))
    assert pngs[0].name == "frame_001001.png" and (frames_dir / "sequence.json").is_file()
    last = cv2.imread(str(pngs[-1]), cv2.IMREAD_UNCHANGED)
    assert last.dtype == np.uint16 and last.shape == (512, 512, 4)
    matte = last[..., 3] / 65535
    assert matte.min() == 0 and matte.max() == 1  # neither all 0 nor all 1
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.profile == "4444" and container.streams.audio
        frames = list(container.decode(video=0))
    assert len(frames) == len(pngs) and abs(len(pngs) / 25 - seconds) <= 1 / 25 + 1e-6
    plane = frames[-1].planes[3]
    bits = 12 if "12" in frames[-1].format.name else 10
    alpha = np.frombuffer(plane, np.uint16).reshape(plane.height, -1)[:, : plane.width] / (2**bits - 1)
    assert np.abs(alpha - matte).max() <= 1 / 1023


def test_face_restore_refuses_an_upscaler_and_a_strength_outside_0_to_1(animate, models_dir, short_clip, tmp_path):
    base = ("--portrait", MEDIA / "aiface2.png", "--audio", short_clip[0], "--out", tmp_path / "x.mp4",
            "--variant", VARIANT, "--models", models_dir, "--offline")
    status, err = animate(*base, "--face-restore", write_upscaler(tmp_path / "x2.pth"))
    assert status == 2
    says(err, "--face-restore", "x2.pth", "not a face-restoration model", "--upscale-model")
    status, err = animate(*base, "--restore-strength", "1.5")
    assert status == 2 and "--restore-strength" in err and "1.5" in err
    assert not (tmp_path / "x.mp4").exists()


@pytest.fixture
def command(capsys, monkeypatch):
    """``command(name, *args)`` -> (exit status, stderr) of ``anitalker NAME ...`` in this process, offline."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def run(name: str, *args: str) -> tuple[int, str]:
        capsys.readouterr()
        try:
            status = cli.main([name, *map(str, args)])
        except SystemExit as exc:
            status = exc.code
        return status, capsys.readouterr().err

    return run


def test_motion_then_render_is_animate_in_two_steps(drawn, command, models_dir, short_clip, tmp_path):
    """``anitalker motion`` samples what ``animate`` samples for the same options and writes it in Save Motion's
    format without rendering; ``anitalker render`` renders it with the stage-1 weights alone (the models folder
    holds no HuBERT and no default generator) and the recording as its soundtrack."""
    from anitalker_core.motion.files import load_motion

    audio, _ = short_clip
    same = ("--portrait", MEDIA / "monalisa.jpg", "--audio", audio, "--variant", VARIANT, "--models", models_dir,
            "--steps", "2", "--seed", "3", "--seed-mode", "official", "--yaw", "10", "--device", "cpu", "--offline")
    sampled = tmp_path / "takes" / "take.safetensors"
    status, err = command("motion", *same, "--out", sampled)
    assert status == 0, err
    estimate = next(line for line in err.splitlines() if line.startswith("estimate: about"))
    assert "features" in estimate and "sampling" in estimate and "rendering" not in estimate  # nothing rendered
    assert f"saved the motion to {sampled} (2 frames at 25 fps, seed 3)" in err
    status, err = command("animate", *same, "--out", tmp_path / "whole.mp4", "--save-motion", tmp_path / "whole.st")
    assert status == 0, err
    motion, animated = load_motion(sampled), load_motion(tmp_path / "whole.st")
    assert motion.variant == VARIANT and motion.seeds == (3,) and motion.num_frames == 2
    assert torch.equal(motion.latents, animated.latents) and torch.equal(motion.pose_deg, animated.pose_deg)
    assert [p.name for p in (tmp_path / "takes").iterdir()] == ["take.safetensors"]  # no partial file left

    out = tmp_path / "rendered.mp4"
    status, err = command("render", "--motion", sampled, "--portrait", MEDIA / "aiface2.png", "--crop", "full",
                          "--audio", audio, "--out", out, "--models", models_dir, "--device", "cpu", "--offline")
    assert status == 0, err
    with av.open(str(out)) as container:
        assert {s.type for s in container.streams} == {"video", "audio"}
        assert sum(1 for _ in container.decode(video=0)) == 2


def test_render_refuses_a_missing_motion_or_take_before_loading_weights(command, tmp_path, short_clip):
    base = ("--portrait", MEDIA / "aiface2.png", "--out", tmp_path / "x.mp4", "--models", tmp_path / "none",
            "--offline")
    status, err = command("render", "--motion", tmp_path / "nope.safetensors", *base)
    assert status == 2 and "nope.safetensors" in err and "does not exist" in err
    from anitalker_core.motion.files import save_motion
    from anitalker_core.types import Motion

    saved = save_motion(Motion(latents=torch.zeros(2, 5, 20)), tmp_path / "two.safetensors")
    status, err = command("render", "--motion", saved, "--take", "2", *base)
    assert status == 2 and "take 2 does not exist" in err and "2 take(s)" in err
    status, err = command("motion", "--portrait", MEDIA / "aiface2.png", "--audio", short_clip[0])
    assert status == 2 and "--out" in err  # the motion file to write is required


def test_a_hubert_of_the_wrong_size_is_refused_before_anything_loads(animate, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    # placeholders: the refusal must come from the HuBERT config before any checkpoint is read
    for name in ("stage1.ckpt", "stage2_audio_only_hubert.ckpt"):
        (models / name).write_bytes(b"not read")
    write_hubert_folder(models / "chinese-hubert-large", layers=12, width=768)
    status, err = animate("--portrait", REPO / "examples/monalisa.jpg", "--audio", REPO / "examples/statue.wav",
                          "--out", tmp_path / "x.mp4", "--models", models, "--offline")
    assert status == 2, err
    assert "HuBERT" in err and "Traceback" not in err
    for fact in ("12 layers of width 768", "24 layers of width 1024", "TencentGameMate/chinese-hubert-large"):
        assert fact in err


@pytest.mark.slow
def test_calm_silence_calms_the_pause_of_the_motion_it_saves_and_renders(drawn, animate, models_dir, tmp_path):
    """The motion is sampled for real; the stand-in decoder draws its frames (the video's length is what is checked
    of them)."""
    from tests.support.speech_motion import RATE, read_speech

    from anitalker_core.motion.files import load_motion

    speech = torch.from_numpy(read_speech())
    noise = torch.randn(int(0.8 * RATE), generator=torch.Generator().manual_seed(0)) * 1e-3  # room noise
    clip = torch.cat([speech[int(0.2 * RATE):int(0.52 * RATE)], noise, speech[int(1.0 * RATE):int(1.32 * RATE)]])
    audio, out, saved = tmp_path / "pause.wav", tmp_path / "out.mp4", tmp_path / "take.safetensors"
    write_wav(audio, clip[None], RATE)
    status, err = animate(
        "--portrait", MEDIA / "monalisa.jpg", "--audio", audio, "--out", out, "--variant", VARIANT,
        "--models", models_dir, "--steps", "3", "--device", "cpu", "--offline",
        "--calm-silence", "1", "--save-motion", saved,
    )
    assert status == 0, err
    assert "1 pause(s): 0.40-1.04 s" in err and "calmed (strength 1" in err  # frames 10-26, past the hangover
    motion = load_motion(saved)
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == motion.num_frames  # the saved motion was rendered
    step = (motion.latents[0, 1:] - motion.latents[0, :-1]).norm(dim=-1)
    assert float(step[15:21].mean()) < 0.3 * float(step[:7].mean())  # deep in the pause vs the first words


def test_calm_silence_strength_is_checked_before_any_work(animate, tmp_path):
    status, err = animate("--portrait", "p.png", "--audio", "a.wav", "--out", tmp_path / "x.mp4",
                          "--calm-silence", "2")
    assert status == 2 and "--calm-silence" in err and "0 to 1" in err and "'2'" in err


# -- the first command of a new user: no weights, no network ----------------------------------------------

def assert_says_what_to_do(stderr, models):
    assert stderr.startswith("error: "), stderr
    for part in ("stage1.ckpt", "stage2_audio_only_hubert.ckpt", "chinese-hubert-large", str(models),
                 "--models DIR", "--offline", "mfcc_pose_only", "mfcc_full_control"):
        assert part in stderr, part
    assert "Traceback" not in stderr and "Retry" not in stderr and "thrown while requesting" not in stderr


@pytest.mark.parametrize("hub", ["silent", "unresolvable"])
def test_no_network_means_a_clear_message_and_nothing_left_behind(animate, monkeypatch, tmp_path, hub):
    """No --offline, no HF_HUB_OFFLINE, no weights, and a hub that cannot be reached: one that swallows
    requests (the probe's timeout is the worst case) or a name that resolves nowhere (an offline machine). That
    the command asks the hub once, with the probe's timeout, and then stops, is tests/test_model_files.py's."""
    from functools import partial

    from anitalker_core.weights import files

    models = tmp_path / "models"
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(files, "hub_reachable", partial(files.hub_reachable, timeout=0.3))  # the wait, shortened
    with silent_hub() as silent:
        monkeypatch.setenv("HF_ENDPOINT", silent if hub == "silent" else "http://huggingface.invalid")
        status, err = animate("--portrait", REPO / "examples/monalisa.jpg", "--audio", REPO / "examples/statue.wav",
                              "--out", tmp_path / "x.mp4", "--models", models)
    assert status == 2, err
    assert "cannot be reached" in err and len(err.splitlines()) <= 8, err
    assert_says_what_to_do(err, models)
    assert not models.exists() and not (tmp_path / "x.mp4").exists()


def run_cli(*args, env_extra=None):
    """The command as a real process (huggingface_hub reads its settings when it is imported).
    env_extra: variables to set; a value of None removes the variable."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    env.update(env_extra or {})
    env = {k: v for k, v in env.items() if v is not None}
    return subprocess.run([sys.executable, "-m", "anitalker_core", "animate", *map(str, args)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_a_failing_download_leaves_the_models_folder_as_it_was(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "readme.txt").write_text("the user's own file")
    with empty_hub() as url:
        proc = run_cli("--portrait", "examples/monalisa.jpg", "--audio", "examples/statue.wav",
                       "--out", tmp_path / "x.mp4", "--models", models,
                       env_extra={"HF_HUB_OFFLINE": None, "HF_ENDPOINT": url})
    assert proc.returncode == 2, proc.stderr
    for name in ("stage1.ckpt", "stage2_audio_only_hubert.ckpt", "chinese-hubert-large"):
        assert proc.stderr.count(f"could not download {name}: ") == 1, proc.stderr
    assert_says_what_to_do(proc.stderr[proc.stderr.index("error: "):], models)
    assert [p.name for p in models.rglob("*")] == ["readme.txt"]  # no .cache/huggingface, no .lock files


def test_a_conversation_takes_one_speaker_per_face_instead_of_audio(animate, models_dir, tmp_path):
    """--speaker FACE:FILE once per face; a malformed one, or one beside --audio, is refused before any work."""
    from anitalker_core.app.cli import build_parser, clip_options

    given = vars(build_parser().parse_args(["animate", "--portrait", "p.png", "--speaker", "1:a.wav", "--speaker",
                                            "2:b.wav", "--face", "2"]))
    clip = clip_options(given)
    assert clip.speaker == ((1, Path("a.wav")), (2, Path("b.wav"))) and clip.face == 2 and clip.audio is None
    status, err = animate("--portrait", MEDIA / "monalisa.jpg", "--speaker", "a.wav", "--out", tmp_path / "x.mp4")
    assert status == 2 and "FACE:FILE" in err and "a.wav" in err
    status, err = animate("--portrait", MEDIA / "monalisa.jpg", "--speaker", f"1:{MEDIA / 'statue.wav'}",
                          "--audio", MEDIA / "statue.wav", "--out", tmp_path / "x.mp4", "--variant", VARIANT,
                          "--models", models_dir, "--offline")
    assert status == 2 and "--speaker" in err and "not both" in err
    assert not (tmp_path / "x.mp4").exists()


def test_dub_puts_the_speech_on_the_footage_at_its_size_and_rate(drawn, command, models_dir, tmp_path):
    """anitalker dub: the footage's size and frame rate, the speech's length and sound; footage without a face and a
    file without a video stream are refused with what was checked, leaving nothing."""
    from fractions import Fraction

    import av

    from tests.support.moving_face import write_shot

    pcm, rate = read_statue(0.2)
    audio, seconds = write_wav(tmp_path / "speech.wav", pcm, rate), pcm.shape[1] / rate
    shot = write_shot(tmp_path / "shot.mp4", width=320, height=180, fps=Fraction(24), frames=2, side=130)  # < speech
    out = tmp_path / "dub.mp4"
    status, err = command("dub", "--video", shot.path, "--audio", audio, "--out", out, "--models", models_dir,
                          "--variant", VARIANT, "--steps", "2", "--device", "cpu", "--offline")
    assert status == 0, err
    says(err, "footage: 320x180, 2 frames at 24 fps", "followed in 2 of 2 frames", "pingpong", "estimate: about")
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        assert (stream.width, stream.height, stream.average_rate) == (320, 180, 24)
        assert container.streams.audio
    assert abs(frames - seconds * 24) <= 2
    empty = write_shot(tmp_path / "empty.mp4", width=320, height=180, frames=2, side=130, hidden=range(2))
    status, err = command("dub", "--video", empty.path, "--audio", audio, "--out", tmp_path / "no.mp4",
                          "--models", models_dir, "--variant", VARIANT, "--device", "cpu", "--offline")
    assert status == 2 and "no face was found in the footage" in err and "Traceback" not in err
    status, err = command("dub", "--video", audio, "--audio", audio, "--out", tmp_path / "no.mp4", "--models",
                          models_dir, "--variant", VARIANT, "--device", "cpu", "--offline")
    assert status == 2 and "no video stream" in err
    assert not (tmp_path / "no.mp4").exists()
