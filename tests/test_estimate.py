"""The run estimate against the real runs it predicts, and the refusal of runs that cannot fit.

Time is judged on work, not on this machine's speed: the estimates read ``flop_clock``, which counts the arithmetic
done (the same on every CPU, busy or idle), so an estimate must extrapolate its warm-up to the run's work within
5 %. Peak memory is within 25 % of the run's (README *Know before you wait*). How the estimates fare in seconds on
real machines is measured by ``bench/estimate.py``, not here.
"""

from __future__ import annotations

import sys
import wave

from tests.support import golden
import numpy as np
from tests.support import peak_memory
import pytest
import torch
from PIL import Image
from tests.support.flop_clock import flop_clock
from tests.support.says import says

from anitalker_core.app import cli
from anitalker_core.audio.features import HubertFeatures, MfccFeatures
from anitalker_core.errors import ResourceError
from anitalker_core.image.paste_back import paste_back
from anitalker_core import pipeline
from anitalker_core.pipeline import features_from_audio, portrait_from_image
from anitalker_core.stages import FrameRender, MotionSampling, PasteBackImages, SpeechFeatures, VideoWrite
from anitalker_core.stages import estimate as est
from anitalker_core import memory
from anitalker_core.memory import resident_memory
from anitalker_core.stages import measure
from anitalker_core.stages.features import features_bytes
from anitalker_core.stages.frames import WARMUP_FRAMES
from anitalker_core.stages.video import stand_in_latents
from anitalker_core.types import PortraitCode
from anitalker_core.video.renderer import render_frames
from anitalker_core.video.video_render import VideoRender
from anitalker_core.video.writers import Mp4Writer, write_wav

WORK_TOLERANCE = 0.05
"""How far an estimate may be from its run's work: the renderer and the sampler scale exactly with frames and
steps, HuBERT's attention with the square of the length, which the estimate models from probes."""
MEMORY_TOLERANCE = 0.25


def assert_memory(estimate: est.RunEstimate) -> None:
    peak = peak_memory.peak_rss()
    assert abs(peak - estimate.host_peak) <= MEMORY_TOLERANCE * peak, (peak, estimate.host_peak)


@pytest.fixture(scope="module")
def scene():
    renderer = golden.renderer()
    picture = torch.from_numpy(np.asarray(Image.open(golden.MEDIA / "monalisa.jpg")).copy()).float().div(255)
    portrait = portrait_from_image(renderer, picture)
    return renderer, picture, portrait, stand_in_latents(portrait, 8)  # the warm-up's 6 frames, then 2 more


def starve(monkeypatch, nbytes: int = 10**6) -> None:
    """The machine has (almost) no RAM left."""
    monkeypatch.setattr(est, "host_available", lambda: nbytes)


def estimated(stage) -> est.RunEstimate:
    return est.run_estimate([stage.estimate()], stage.device)


def test_render_frames_estimate_matches_its_run_which_goes_on_from_the_warm_up(scene, monkeypatch):
    renderer, _, portrait, latents = scene
    rendered = []
    real = renderer.render
    monkeypatch.setattr(renderer, "render", lambda *a: rendered.append(a[1].shape[0]) or real(*a))
    with torch.inference_mode(), flop_clock(monkeypatch) as now:
        peak_memory.reset_peak()
        stage = FrameRender(renderer, portrait, latents, batch_size=2)
        run = estimated(stage)
        warm_frames = sum(rendered)
        images = stage.run()
        work = now()
    assert_memory(run)
    assert run.seconds == pytest.approx(work, rel=WORK_TOLERANCE)
    assert warm_frames == WARMUP_FRAMES and sum(rendered) == latents.shape[0]  # no frame rendered twice
    monkeypatch.setattr(renderer, "render", real)
    with torch.inference_mode():
        assert torch.equal(images[:4], render_frames(renderer, portrait, latents[:4], batch_size=2))
    assert run.fits
    assert [n.what for n in run.host_needs] == ["IMAGE output of 8 frames at 256x256", "rendering 2 frames at once"]
    assert run.host_needs[0].nbytes == 8 * 256 * 256 * 3 * 4
    assert run.summary().startswith("estimate: about ") and "s/frame" in run.summary()


def test_sampler_estimate_matches_its_run(monkeypatch):
    generator = golden.generator("mfcc_full_control")
    portrait = PortraitCode(image=torch.zeros(1, 3, 256, 256), wa=torch.randn(1, 512), alpha0=torch.randn(1, 20),
                            feats=())
    rate = 16000
    audio = features_from_audio(MfccFeatures(), torch.randn(1, 2 * rate) * 0.1, rate)  # 49 frames (official count)
    with torch.inference_mode(), flop_clock(monkeypatch) as now:
        stage = MotionSampling(generator, portrait, audio, steps=10, takes=2)  # a step more or less is 10 % off
        run = estimated(stage)
        start = now()
        stage.run()
        work = now() - start
    assert run.seconds == pytest.approx(work, rel=WORK_TOLERANCE)
    assert "sampling" in run.summary() and "s/step" in run.summary()
    assert run.host_needs[0].what == f"sampler (2 take(s) x {audio.num_frames} frames)"


@pytest.fixture(scope="module")
def small_hubert(tmp_path_factory):
    """A HuBERT of 6 layers of width 384 with random weights: large enough that its time is not noise."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    folder = tmp_path_factory.mktemp("hubert")
    torch.manual_seed(0)
    config = HubertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=6, intermediate_size=1536)
    HubertModel(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    return folder


def test_speech_features_estimate_matches_hubert_in_one_pass(small_hubert, monkeypatch):
    """26 s through HuBERT in one pass: the work (its attention grows with the square of the length) and the peak
    memory (the features and one layer's work, linear in the length) match the run's."""
    encoder = HubertFeatures(small_hubert, expected_shape=None)
    rate = 16000
    wave = torch.randn(1, 26 * rate, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.inference_mode(), flop_clock(monkeypatch) as now:
        stage = SpeechFeatures(encoder, wave, rate)
        step = stage.estimate()
        run = est.RunEstimate((step,), "cpu", resident_memory(), None)
        peak_memory.reset_peak()
        start = now()
        stage.run()
        work = now() - start
    assert_memory(run)
    assert run.seconds == pytest.approx(work, rel=WORK_TOLERANCE)
    assert step.keeps[0].nbytes == features_bytes("hubert", 26 * 25, 7 * 384)  # 7 hidden states of 384


def test_video_estimate_matches_writing_the_clip_pasted_back(scene, tmp_path, monkeypatch):
    renderer, picture, portrait, latents = scene
    clip = VideoRender(renderer, portrait, latents, original=picture, batch_size=2).check()
    with torch.inference_mode(), flop_clock(monkeypatch) as now:
        peak_memory.reset_peak()
        stage = VideoWrite(clip)  # the run goes on from the estimate's warm-up: both count
        run = estimated(stage)
        stage.run([Mp4Writer(tmp_path / "clip.mp4")])
        work = now()
    assert_memory(run)
    assert run.seconds == pytest.approx(work, rel=WORK_TOLERANCE)
    parts = [p.name for s in run.steps for p in s.parts]
    assert parts == ["rendering", "paste back", "encoding"]
    assert "H.264 encoder at 512x512" in [n.what for n in run.host_needs]
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # the estimate wrote nothing


def test_paste_back_memory_of_a_large_picture(scene):
    renderer, picture, _, _ = scene
    canvas = torch.full((900, 1200, 3), 0.4)
    canvas[100:612, 400:912] = picture
    portrait = portrait_from_image(renderer, canvas)
    frames = torch.rand(40, 256, 256, 3, generator=torch.Generator().manual_seed(0))
    peak_memory.reset_peak()
    stage = PasteBackImages(canvas, frames, portrait.crop)
    run = estimated(stage)
    pasted = stage.run()
    assert pasted.shape == (40, 900, 1200, 3)
    assert run.host_needs[0].nbytes == pasted.numel() * 4  # the IMAGE output dominates: 518 MB
    extra = peak_memory.peak_rss() - run.host_in_use
    assert abs(extra - run.host_extra) <= MEMORY_TOLERANCE * run.host_extra, (extra, run.host_extra)
    assert torch.equal(pasted[:4], paste_back(canvas, frames[:4], portrait.crop))  # the estimate's frames, then on


def test_refusals_name_the_figures_and_what_to_change(scene, monkeypatch):
    renderer, picture, portrait, latents = scene
    starve(monkeypatch)
    run = estimated(FrameRender(renderer, portrait, stand_in_latents(portrait, 1500)))  # renders its warm-up only
    assert not run.fits_host
    with pytest.raises(ResourceError) as info:
        run.check()
    says(str(info.value), "not enough memory", "IMAGE output of 1500 frames at 256x256", "1.2 GB", "rendering 2 frames",
         "1 MB is available", "use Render Video instead")
    with pytest.raises(ResourceError, match="use Render Video instead of an IMAGE batch"):
        estimated(PasteBackImages(picture, torch.rand(20, 256, 256, 3), portrait.crop)).check()
    video = estimated(VideoWrite(VideoRender(renderer, portrait, latents[:2], batch_size=2)))
    with pytest.raises(ResourceError, match="smaller batch size"):
        video.check()
    monkeypatch.setattr(est, "host_available", lambda: None)  # unknown: never refused
    assert estimated(PasteBackImages(picture, torch.rand(2, 256, 256, 3), portrait.crop)).check().fits


def test_peak_counts_what_the_step_before_keeps_and_gpu_advice(monkeypatch):
    need = lambda what, gb, advice="": est.Need(what, int(gb * 1e9), advice)  # noqa: E731
    steps = (est.Step((est.Part("features", 20.0),), host=(need("features", 1), need("HuBERT work", 2)),
                      keeps=(need("features", 1),)),
             est.Step((est.Part("sampling", 5.0),), host=(need("sampler", 1.5),)),
             est.Step((est.Part("rendering", 170.0, "0.68 s/frame"),), host=(need("batch", 0.5),),
                      device=(need("rendering 64 frames at once", 9, est.SMALLER_BATCH),)))
    run = est.RunEstimate(steps, "cuda:0", host_in_use=int(2e9), host_available=int(4e9), device_in_use=int(1e9),
                          device_available=int(8e9))
    assert run.seconds == 195 and run.host_extra == 3e9 and run.host_peak == 5e9  # features step, not 1 + 1.5
    assert [n.what for n in run.host_needs] == ["features", "HuBERT work"]
    assert run.fits_host and not run.fits_device and not run.fits
    says(run.summary(), "about 3 min 15 s", "features 20 s", "sampling 5.0 s", "rendering 2 min 50 s", "0.68 s/frame",
         "RAM 5.0 GB at the peak (+3.0 GB)", "4.0 GB available", "GPU memory (cuda:0) 10.0 GB at the peak (+9.0 GB)",
         "8.0 GB free")
    with pytest.raises(ResourceError) as info:
        run.check()
    says(str(info.value), "9.0 GB more GPU memory (cuda:0)", "1.0 GB in use", "8.0 GB is available", "smaller batch size")
    assert est.duration(3725) == "1 h 2 min" and est.duration(59.6) == "1 min" and est.size(4.5e8) == "450 MB"


def test_a_container_limit_is_what_is_available(tmp_path, monkeypatch):
    (tmp_path / "max").write_text("2000000000\n")
    (tmp_path / "current").write_text("1500000000\n")
    (tmp_path / "stat").write_text("anon 1000\ninactive_file 250000000\nactive_file 5\n")
    monkeypatch.setattr(memory, "CGROUP_LIMITS", ((str(tmp_path / "max"), str(tmp_path / "current"),
                                                   str(tmp_path / "stat"), "inactive_file"),))
    monkeypatch.setitem(sys.modules, "psutil", None)  # and no psutil: /proc/meminfo
    assert memory.host_available() == 750_000_000  # the limit less what is used, reclaimable cache not counted
    (tmp_path / "max").write_text("max\n")  # no limit: the machine's own figure
    assert memory.host_available() is None or memory.host_available() > 750_000_000


def speech_excerpt(path, seconds: float):
    """The first ``seconds`` of the sample recording, written to ``path``."""
    with wave.open(str(golden.MEDIA / "statue.wav"), "rb") as f:
        rate = f.getframerate()
        pcm = np.frombuffer(f.readframes(int(seconds * rate)), dtype=np.int16)
    return write_wav(path, torch.from_numpy(pcm.astype(np.float32) / 32768)[None], rate)


@pytest.fixture(scope="module")
def models(models_dir, tmp_path_factory):
    """The models folder and two recordings: 0.36 s (8 frames, more than the render's warm-up of 6) for a run the
    estimate must extrapolate to, 0.12 s (2 frames) for runs that stop at the estimate."""
    folder = tmp_path_factory.mktemp("audio")
    return models_dir, speech_excerpt(folder / "speech.wav", 0.36), speech_excerpt(folder / "short.wav", 0.12)


def animate(models, tmp_path, *extra, short=False):
    d, speech, brief = models
    audio = brief if short else speech
    return cli.main(["animate", "--portrait", str(golden.MEDIA / "aiface2.png"), "--audio", str(audio),
                     "--variant", "mfcc_full_control", "--models", str(d), "--offline", "--steps", "5",
                     "--device", "cpu", "--crop", "full", *extra])


def test_headless_estimate_matches_its_run(models, tmp_path, monkeypatch, capsys):
    made, real = [], est.run_estimate

    def run_estimate(steps, device):
        made.append((real(steps, device), measure.clock()))
        peak_memory.reset_peak()
        return made[-1][0]

    monkeypatch.setattr(pipeline, "run_estimate", run_estimate)  # the one the headless Animation calls
    with flop_clock(monkeypatch) as now:
        assert animate(models, tmp_path, "--out", str(tmp_path / "out.mp4")) == 0
        work = now() - made[0][1]
    (run, _), = made
    assert_memory(run)
    rendering = sum(p.seconds for s in run.steps for p in s.parts if p.name == "rendering")
    assert rendering > 0.9 * run.seconds  # the render is what the clock counts here
    assert run.seconds == pytest.approx(work, rel=WORK_TOLERANCE)
    assert [p.name for s in run.steps for p in s.parts] == ["features", "sampling", "rendering", "encoding"]
    assert run.summary() in capsys.readouterr().err.splitlines()


def test_headless_refuses_at_once_and_dry_run_writes_nothing(models, tmp_path, monkeypatch, capsys):
    """When it refuses and what a dry run leaves, not the figures: the stand-ins encode and draw."""
    from tests.support.stand_in import stand_in_networks

    stand_in_networks(monkeypatch)
    starve(monkeypatch)
    out = tmp_path / "out.mp4"
    assert animate(models, tmp_path, "--out", str(out), "--frames-dir", str(tmp_path / "seq"), short=True) == 2
    err = capsys.readouterr().err
    assert "error: not enough memory for this run" in err and "Traceback" not in err
    assert "estimate: about" in err and "sampling motion" not in err  # refused before the features and sampling
    assert animate(models, tmp_path, "--dry-run", "--no-memory-check", short=True) == 0
    err = capsys.readouterr().err
    assert "estimate: about" in err and err.rstrip().endswith("dry run: nothing was written")
    assert list(tmp_path.iterdir()) == []
