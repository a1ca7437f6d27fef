"""Faults: interrupts, mismatched motions, long inputs with bounded memory, the server-facing error type."""

from __future__ import annotations

from tests.support import golden
import pytest
import torch
from tests.support.golden import io
from tests.support.stand_in import stand_in_render

from anitalker_core import device_policy
from anitalker_core.errors import AniTalkerError, Interrupted, MotionError
from anitalker_core.models.conformer import Conformer
from anitalker_core.models.variance_adapter import Attributes
from anitalker_core.stages.measure import measure
from anitalker_core.types import Motion
from anitalker_core.video.renderer import encode_portrait, render_frames


@pytest.fixture(scope="module")
def renderer():
    return golden.renderer()


@pytest.fixture(scope="module")
def portrait(renderer):
    """The fixtures' portrait, encoded once for the tests that render it or check what the renderer refuses."""
    return encode_portrait(renderer, io("stage1")["portrait"])


@pytest.fixture(scope="module")
def generator():
    return golden.generator("mfcc_full_control")


def fixture_condition(gen, s, control=True):
    given = Attributes(s["pose"], s["face_location"], s["face_scale"]) if control else None
    return gen.condition(s["mfcc"][:160][None], s["wa"], s["alpha0"], given)


def interrupt_after(n, log):
    """A progress callback that cancels at its ``n``th report, noting each report in ``log``."""

    def callback(done, total):
        log.append(("report", done))
        if sum(1 for kind, _ in log if kind == "report") >= n:
            raise Interrupted()

    return callback


def test_render_cancel_is_seen_after_each_batch_and_no_batch_starts_after_it(renderer, portrait, monkeypatch):
    """Which batches run and when Cancel is seen, not the frames' pixels: the stand-in decoder draws them until the
    run after the Cancel, which the network renders."""
    latents = io("stage1")["alphas"].repeat(10, 1)
    log = []
    drawn = stand_in_render(renderer.size)
    monkeypatch.setattr(renderer, "render", lambda *a: log.append(("batch", a[1].shape[0])) or drawn(*a))
    with pytest.raises(Interrupted):
        render_frames(renderer, portrait, latents, batch_size=2, callback=interrupt_after(2, log))
    assert log == [("batch", 2), ("report", 2), ("batch", 2), ("report", 4)]  # nothing rendered after Cancel
    monkeypatch.undo()
    assert render_frames(renderer, portrait, latents[:2]).shape == (2, 256, 256, 3)  # the next run works


def test_sampler_cancel_is_seen_after_each_step_and_no_step_starts_after_it(generator, monkeypatch):
    s = io("stage2")
    log = []
    real = generator.denoise
    monkeypatch.setattr(generator, "denoise", lambda *a: log.append(("step", 0)) or real(*a))
    with pytest.raises(Interrupted):
        generator.sample(fixture_condition(generator, s), s["noise"], steps=50, callback=interrupt_after(3, log))
    kinds = [kind for kind, _ in log]
    assert kinds.count("report") == 3 and kinds[-1] == "report"  # no denoiser call after Cancel
    assert kinds.count("step") == 3  # one call per step: each step reported
    monkeypatch.setattr(generator, "denoise", real)
    out, _ = generator.sample(fixture_condition(generator, s, control=False), s["noise"], steps=10)
    assert torch.allclose(out, s["mfcc_full_control.control0.steps10"], atol=1e-3)


def test_motion_of_another_size_or_empty_is_refused_by_the_renderer(renderer, portrait):
    from anitalker_core.pipeline import render_motion

    with pytest.raises(MotionError, match="12 numbers per frame.*expects 20"):
        render_motion(renderer, portrait, Motion(latents=torch.zeros(1, 4, 12)))
    with pytest.raises(MotionError, match="empty"):
        render_motion(renderer, portrait, Motion(latents=torch.zeros(1, 0, 20)))


def attend_in_blocks_of(generator, rows):
    """Queries per attention block in every conformer of the generator (None: as the memory budget allows)."""
    for module in generator.modules():
        if isinstance(module, Conformer):
            module.query_rows = rows


def test_a_clip_longer_than_the_old_windows_is_one_pass_equal_to_whole_attention(generator, monkeypatch):
    """1,510 frames, past the 60 s (1,500 frames) the sampler used to cut clips into cross-faded windows: every
    denoiser call sees all frames, and with a 4 MB attention budget (18 blocks of queries) the motion is that of
    whole-sequence attention, the official computation, in far less memory."""
    s = io("stage2")
    frames = 1510
    g = torch.Generator().manual_seed(5)
    speech = torch.randn(1, 4 * frames, 39, generator=g) * 3
    noise = torch.randn(1, frames, 20, generator=g)
    cond = generator.condition(speech, s["wa"], s["alpha0"])
    seen = []
    real = generator.denoise
    monkeypatch.setattr(generator, "denoise", lambda enc, x, t: seen.append(x.shape[1]) or real(enc, x, t))
    monkeypatch.setattr(device_policy, "ATTENTION_BYTES", 4 * 2**20)
    cpu = torch.device("cpu")
    try:
        attend_in_blocks_of(generator, None)
        blocked = measure(lambda: generator.sample(cond, noise, steps=2), cpu)
        attend_in_blocks_of(generator, frames)
        whole = measure(lambda: generator.sample(cond, noise, steps=2), cpu)
    finally:
        attend_in_blocks_of(generator, None)
    assert seen == [frames] * 4  # one pass: no window, no join
    (latents, used), (expected, predicted) = blocked.value, whole.value
    assert latents.shape == (1, frames, 20) and float((latents - expected).abs().max()) <= 1e-4
    assert float((used.pose - predicted.pose).abs().max()) <= 1e-5
    # measured: 97 MB against 126 MB; what is left is the decoder's own activations, linear in the length
    scores = 4 * 2 * frames * frames * 4  # the score tables of whole-sequence attention: 73 MB
    assert blocked.host_bytes < whole.host_bytes - scores / 4, (blocked.host_bytes, whole.host_bytes)


def test_bad_inputs_anywhere_raise_value_errors_that_say_what_to_change(renderer, portrait):
    """ComfyUI reports a node's exception to the artist and keeps serving; the pack's errors are ValueErrors
    (the type ComfyUI's own nodes raise for bad input) whose message names the input and the fix."""
    from anitalker_core.audio.waveform import prepare_waveform
    from anitalker_core.motion.control import make_control
    from anitalker_core.pipeline import render_motion

    bad_inputs = [
        (lambda: prepare_waveform(torch.zeros(2, 0), 16000), ("empty", "0 samples")),
        (lambda: prepare_waveform(torch.randn(1, 16000), 7), ("7 Hz", "re-export")),
        (lambda: render_motion(renderer, portrait, Motion(latents=torch.zeros(1, 4, 12))), ("12", "20")),
        (lambda: make_control(yaw=0.0, pitch=0.0, roll=0.0, location=0.5, scale=0.5, keyframes="0: yaw=oops"),
         ("oops",)),
    ]
    for call, facts in bad_inputs:
        with pytest.raises(ValueError) as info:
            call()
        assert isinstance(info.value, AniTalkerError), repr(info.value)
        for fact in facts:
            assert fact in str(info.value), (fact, str(info.value))


def test_huge_8000px_portrait_is_cropped_without_exhausting_memory():
    import numpy as np
    from tests.support.golden import MEDIA
    from PIL import Image

    from anitalker_core.image.portrait_crop import crop_portrait

    big = torch.full((8000, 8000, 1), 0.8)
    face = torch.from_numpy(np.asarray(Image.open(MEDIA / "statue.jpg").convert("L").resize((2400, 2400))).copy())
    big[3000:5400, 2000:4400, 0] = face.float() / 255
    crop, box, _ = crop_portrait(big)
    assert crop.shape == (1, 3, 256, 256)
    assert 2000 <= box.x0 + box.size / 2 <= 4400 and 3000 <= box.y0 + box.size / 2 <= 5400
