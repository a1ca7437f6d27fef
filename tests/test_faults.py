"""Faults: interrupts, mismatched motions, long inputs with bounded memory, the server-facing error type."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
import torch

from anitalker_core.ddim import sample_motion
from anitalker_core.errors import AniTalkerError, Interrupted, MotionError
from anitalker_core.motion_autoencoder import MotionAutoencoder
from anitalker_core.motion_generator import MotionGenerator
from anitalker_core.renderer import encode_portrait, render_frames
from anitalker_core.types import Motion
from golden import REPO, io, state_dict


@pytest.fixture(scope="module")
def renderer():
    m = MotionAutoencoder().eval()
    m.load_state_dict(state_dict("stage1"))
    return m


@pytest.fixture(scope="module")
def generator():
    g = MotionGenerator("mfcc_full_control").eval()
    g.load_state_dict({k[10:]: v for k, v in state_dict("mfcc_full_control").items() if k.startswith("ema_model.")})
    return g


def interrupt_after(n):
    calls = []

    def callback(done, total):
        calls.append(time.perf_counter())
        if len(calls) >= n:
            raise Interrupted()

    return callback, calls


def test_render_interrupt_stops_within_a_second_and_the_next_run_works(renderer):
    from anitalker_core.renderer import default_batch_size

    portrait = encode_portrait(renderer, io("stage1")["portrait"])
    latents = io("stage1")["alphas"].repeat(10, 1)
    batch = default_batch_size(torch.device("cpu"))
    t0 = time.perf_counter()
    render_frames(renderer, portrait, latents[:batch], batch_size=batch)
    one_batch = time.perf_counter() - t0  # what this machine needs for one default batch, right now
    callback, calls = interrupt_after(2)
    t0 = time.perf_counter()
    with pytest.raises(Interrupted):
        render_frames(renderer, portrait, latents, callback=callback)  # default CPU batch
    # the interrupt is checked after every batch: on a 2-core CPU a default batch takes about 0.7 s
    assert len(calls) == 2 and calls[1] - calls[0] < max(1.0, 1.5 * one_batch)
    assert time.perf_counter() - t0 < 3 * max(1.0, one_batch)
    frames = render_frames(renderer, portrait, latents[:2])
    assert frames.shape == (2, 256, 256, 3)


def test_sampler_interrupt_stops_at_the_next_step(generator):
    s = io("stage2")
    callback, calls = interrupt_after(3)
    with pytest.raises(Interrupted):
        sample_motion(generator, s["wa"], s["alpha0"], s["mfcc"][:160][None], s["pose"], s["face_location"],
                      s["face_scale"], s["noise"], steps=50, callback=callback)
    assert len(calls) == 3 and max(b - a for a, b in zip(calls, calls[1:])) < 1.0
    out = sample_motion(generator, s["wa"], s["alpha0"], s["mfcc"][:160][None], s["pose"], s["face_location"],
                        s["face_scale"], s["noise"], steps=10)
    assert torch.allclose(out, s["mfcc_full_control.control0.steps10"], atol=1e-3)


def test_motion_of_another_size_or_empty_is_refused_by_the_renderer(renderer):
    from anitalker_core.pipeline import render_motion

    portrait = encode_portrait(renderer, io("stage1")["portrait"])
    with pytest.raises(MotionError, match="12 numbers per frame but the renderer expects 20"):
        render_motion(renderer, portrait, Motion(latents=torch.zeros(1, 4, 12)))
    with pytest.raises(MotionError, match="empty"):
        render_motion(renderer, portrait, Motion(latents=torch.zeros(1, 0, 20)))


def test_windowed_sampling_equals_one_pass_when_it_fits_and_is_seamless_otherwise(generator):
    s = io("stage2")
    args = (generator, s["wa"], s["alpha0"], s["mfcc"][:160][None], s["pose"], s["face_location"],
            s["face_scale"], s["noise"])
    one = sample_motion(*args, steps=10)
    assert torch.equal(sample_motion(*args, steps=10, window=40), one)
    windowed = sample_motion(*args, steps=10, window=24, overlap=8)
    assert windowed.shape == one.shape and torch.isfinite(windowed).all()
    jumps = (windowed[:, 1:] - windowed[:, :-1]).abs().mean(-1)[0]
    assert float(jumps[14:18].max()) < 3 * float(jumps.mean()) + 1e-6  # no jump where the windows meet


def test_every_user_error_is_a_value_error_so_the_server_reports_it():
    assert issubclass(AniTalkerError, ValueError) and issubclass(MotionError, AniTalkerError)


def test_ten_minutes_of_speech_sample_in_bounded_memory():
    """MFCC features and windowed sampling of a 10-minute clip, in a fresh process to measure peak memory."""
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]
        from golden import state_dict, io
        from anitalker_core.audio_features import MfccFeatures
        from anitalker_core.ddim import sample_motion
        from anitalker_core.motion_generator import MotionGenerator
        g = MotionGenerator("mfcc_pose_only").eval()
        g.load_state_dict({{k[10:]: v for k, v in state_dict("mfcc_pose_only").items() if k.startswith("ema_model.")}})
        wave = torch.randn(16000 * 600) * 0.1
        feats = MfccFeatures()(wave)
        s = io("stage2")
        n = feats.num_frames
        with torch.no_grad():
            out = sample_motion(g, s["wa"], s["alpha0"], feats.values[None], None, None, None,
                                torch.randn(1, n, 20), steps=2)
        # VmHWM: this process's own peak (ru_maxrss would include the parent's size at fork time)
        hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
        print(n, tuple(out.shape), bool(torch.isfinite(out).all()), int(hwm) // 1024)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    frames, shape, finite, peak_mb = result.stdout.split("(")[0].split()[0], result.stdout, "True" in result.stdout, \
        int(result.stdout.split()[-1])
    assert int(frames) == 14999 and "(1, 14999, 20)" in shape and finite
    assert peak_mb < 3000, f"peak RSS {peak_mb} MB"


def test_huge_8000px_portrait_is_cropped_without_exhausting_memory():
    import numpy as np
    from PIL import Image

    from anitalker_core.portrait_crop import crop_portrait
    from golden import MEDIA

    big = torch.full((8000, 8000, 1), 0.8)
    face = torch.from_numpy(np.asarray(Image.open(MEDIA / "statue.jpg").convert("L").resize((2400, 2400))).copy())
    big[3000:5400, 2000:4400, 0] = face.float() / 255
    crop, box, _ = crop_portrait(big)
    assert crop.shape == (1, 3, 256, 256)
    assert 2000 <= box.x0 + box.size / 2 <= 4400 and 3000 <= box.y0 + box.size / 2 <= 5400
