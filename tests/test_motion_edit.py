"""Motion edits and motion files: jitter reduction that keeps speech, exact identities, blending, saving."""

from __future__ import annotations

import math

import pytest
import torch

from anitalker_core.errors import ControlError, MotionError
from anitalker_core.motion.edit import blend, jitter, lowpass, scale_strength, select_take, smooth
from anitalker_core.motion.files import load_motion, save_motion
from anitalker_core.types import Motion

FRAMES = 250  # 10 s at 25 fps


def _wave(hz: float, frames: int = FRAMES, phase: float = 0.0) -> torch.Tensor:
    t = torch.arange(frames, dtype=torch.float64) / 25
    return torch.sin(2 * math.pi * hz * t + phase)


def _rms(x: torch.Tensor) -> float:
    return float(x.double().pow(2).mean().sqrt())


@pytest.fixture(scope="module")
def synthetic():
    """2 takes x 250 frames x 20: a 0.4 Hz head sway + a 3 Hz mouth rhythm around alpha0, plus frame jitter."""
    g = torch.Generator().manual_seed(0)
    phases = torch.rand(20, generator=g, dtype=torch.float64) * 6
    slow = torch.stack([_wave(0.4, phase=float(p)) for p in phases], dim=1) * 0.5
    fast = torch.stack([_wave(3.0, phase=float(p)) for p in phases], dim=1) * 0.2
    alpha0 = torch.randn(1, 20, generator=g)
    clean = (alpha0.double() + slow + fast).expand(2, -1, -1)
    noise = torch.randn(2, FRAMES, 20, generator=g, dtype=torch.float64) * 0.05
    motion = Motion(latents=(clean + noise).float(), variant="mfcc_full_control", alpha0=alpha0, seeds=(7, 8),
                    note="sampled")
    return motion, clean.float(), slow.float(), fast.float()


def test_smoothing_removes_jitter_and_keeps_head_and_mouth_motion(synthetic):
    motion, clean, slow, fast = synthetic
    out = smooth(motion, 1.0)
    assert "smoothed" in out.note and out.latents.shape == motion.latents.shape
    # the clean 3 Hz rhythm has real curvature; what smoothing must remove is the jitter above it
    excess_before = jitter(motion.latents) - jitter(clean)
    assert excess_before > 0.02  # the noise is visible to the metric
    assert jitter(out.latents) - jitter(clean) < 0.3 * excess_before
    assert jitter(out.latents - clean) < 0.5 * jitter(motion.latents - clean)  # white noise: half is in-band
    noise_rms = _rms(motion.latents - clean)
    # stated tolerance: the result is closer to the clean motion than the noisy input was (white noise keeps
    # ~2/3 of its power below the 8.3 Hz cut-off, so ~0.8x is the best a speech-preserving filter can do)
    assert _rms(out.latents - clean) < 0.85 * noise_rms
    # the 3 Hz mouth rhythm keeps >= 90 % of its amplitude (projection onto the clean rhythm)
    fast_part = out.latents[0] - motion.alpha0 - slow
    kept = float((fast_part * fast).sum() / (fast * fast).sum())
    assert 0.9 < kept < 1.05
    # zero phase: no delay of the lips against the audio (lagged correlation peaks at 0)
    corr = [float((torch.roll(fast_part, s, 0) * fast)[5:-5].sum()) for s in (-1, 0, 1)]
    assert corr[1] > max(corr[0], corr[2])
    # stronger smoothing: less jitter, and eventually the mouth rhythm goes too
    assert jitter(smooth(motion, 3.0).latents) < jitter(out.latents)
    heavy = smooth(motion, 20.0).latents[0] - motion.alpha0 - slow
    assert float((heavy * fast).sum() / (fast * fast).sum()) < 0.2


def test_smoothing_keeps_the_ends_and_handles_short_motions(synthetic):
    motion, clean, _, _ = synthetic
    out = smooth(motion, 1.0)
    edge = (out.latents[:, :3] - clean[:, :3]).abs().max()
    assert float(edge) < 0.15  # no pull towards zero or towards a padded constant at the first frames
    tiny = Motion(latents=torch.randn(1, 2, 20))
    assert torch.equal(smooth(tiny, 2.0).latents, tiny.latents) and "only 2 frame" in smooth(tiny, 2.0).note
    four = Motion(latents=torch.randn(1, 4, 20))
    assert torch.isfinite(smooth(four, 2.0).latents).all()


def test_exact_identities(synthetic):
    motion = synthetic[0]
    copy = smooth(motion, 0)
    assert torch.equal(copy.latents, motion.latents) and copy.latents is not motion.latents
    assert torch.equal(scale_strength(motion, 1.0).latents, motion.latents)
    assert torch.equal(scale_strength(motion, 1.0, head=1.0, mouth=1.0).latents, motion.latents)
    assert torch.equal(scale_strength(motion, 0.5, head=2.0, mouth=2.0).latents, motion.latents)  # 0.5 x 2 = 1


def test_strength_scales_around_the_portrait_code(synthetic):
    motion, _, slow, fast = synthetic
    center = motion.alpha0.view(1, 1, -1)
    calm = scale_strength(motion, 0.5)
    assert torch.allclose(calm.latents - center, (motion.latents - center) * 0.5, atol=1e-6)
    assert "head x0.5, mouth x0.5" in calm.note
    still = scale_strength(motion, 0.0)
    assert torch.allclose(still.latents, center.expand_as(motion.latents))
    # head=0 removes the slow sway but keeps the 3 Hz mouth rhythm
    no_head = scale_strength(motion, head=0.0, mouth=1.0).latents[0] - motion.alpha0
    inner = slice(25, -25)  # away from the filter's ends
    assert abs(float((no_head * slow)[inner].sum() / (slow * slow)[inner].sum())) < 0.05
    assert float((no_head * fast)[inner].sum() / (fast * fast)[inner].sum()) == pytest.approx(1.0, abs=0.05)
    # the given alpha0 overrides; without any, the temporal mean is used and the note says so
    other = torch.zeros(1, 20)
    assert torch.allclose(scale_strength(motion, 2.0, alpha0=other).latents, motion.latents * 2)
    bare = Motion(latents=motion.latents)
    fallback = scale_strength(bare, 0.0)
    assert "average" in fallback.note
    assert torch.allclose(fallback.latents, motion.latents.mean(dim=1, keepdim=True).expand_as(motion.latents))
    with pytest.raises(MotionError, match="portrait motion code"):
        scale_strength(motion, 0.5, alpha0=torch.zeros(1, 12))
    with pytest.raises(MotionError, match="strength"):
        scale_strength(motion, float("nan"))


def test_blend_endpoints_are_bit_exact(synthetic):
    a = synthetic[0]
    b = Motion(latents=torch.randn(2, FRAMES, 20, generator=torch.Generator().manual_seed(3)) * 7)
    # the naive formula is not exact at w = 1 for these values, so the test can fail if endpoints are not special-cased
    assert not torch.equal(a.latents + (b.latents - a.latents) * 1.0, b.latents)
    assert torch.equal(blend(a, b, 0.0).latents, a.latents)
    assert torch.equal(blend(a, b, 1.0).latents, b.latents)
    half = blend(a, b, 0.5)
    assert torch.allclose(half.latents, (a.latents + b.latents) / 2, atol=1e-5)
    assert half.alpha0 is a.alpha0 and half.seeds == a.seeds


def test_blend_per_frame_curve_lengths_and_takes(synthetic):
    a = synthetic[0]
    b = Motion(latents=torch.randn(1, 100, 20, generator=torch.Generator().manual_seed(4)), seeds=(9,))
    curve = torch.cat([torch.zeros(40), torch.linspace(0, 1, 20), torch.ones(40)])
    out = blend(a, b, curve)
    assert out.num_takes == 2 and out.num_frames == 100 and "250 and 100 frames; blended the first 100" in out.note
    assert torch.equal(out.latents[:, :40], a.latents[:, :40])
    assert torch.equal(out.latents[:, 60:], b.latents[:, 60:].expand(2, -1, -1))
    mid = out.latents[:, 50]
    assert torch.allclose(mid, a.latents[:, 50] + (b.latents[:, 50] - a.latents[:, 50]) * curve[50], atol=1e-6)
    short_curve = blend(a, b, torch.tensor([0.0, 1.0]))
    assert "last value was held" in short_curve.note
    assert torch.equal(short_curve.latents[:, 5], b.latents[:, 5].expand(2, -1))
    assert "clamped" in blend(a, b, 1.5).note
    with pytest.raises(MotionError, match="different sizes"):
        blend(a, Motion(latents=torch.zeros(1, 10, 12)), 0.5)
    with pytest.raises(MotionError, match="2 takes with 3 takes"):
        blend(a, Motion(latents=torch.zeros(3, 10, 20)), 0.5)
    with pytest.raises(MotionError, match="finite"):
        blend(a, b, float("nan"))


def test_select_take_and_refusals(synthetic):
    motion = synthetic[0]
    second = select_take(motion, 1)
    assert second.num_takes == 1 and torch.equal(second.latents[0], motion.latents[1]) and second.seeds == (8,)
    assert select_take(motion, -1).seeds == (8,)
    with pytest.raises(MotionError, match="take 5 does not exist"):
        select_take(motion, 5)
    with pytest.raises(MotionError, match="whole number"):
        select_take(motion, 1.0)
    for edit in (lambda m: smooth(m, 1.0), lambda m: scale_strength(m, 0.5), lambda m: select_take(m, 0),
                 lambda m: blend(m, motion, 0.5), lambda m: blend(motion, m, 0.5)):
        with pytest.raises(MotionError, match="not an AniTalker motion"):
            edit("motion")
    with pytest.raises(MotionError, match="strength"):
        smooth(motion, -1.0)


@pytest.mark.parametrize("fields, message", [
    (dict(latents=torch.zeros(1, 0, 20)), "empty"),
    (dict(latents=torch.full((1, 3, 20), float("nan"))), "NaN or infinite"),
    (dict(latents=torch.zeros(3, 20)), r"\(takes, frames, numbers\) tensor, got \(3, 20\)"),
    (dict(latents=torch.zeros(1, 3, 20, dtype=torch.int64)), "NaN or infinite"),
    (dict(latents=torch.zeros(1, 3, 20), fps=0.0), "frame rate"),
    (dict(latents=torch.zeros(2, 3, 20), seeds=(1,)), "2 take"),
    (dict(latents=torch.zeros(1, 3, 20), alpha0=torch.zeros(1, 12)), "portrait motion code"),
    (dict(latents=torch.zeros(2, 3, 20), pose_deg=torch.zeros(1, 3, 3)), r"pose_deg must be shaped .*\(2, 3, 3\)"),
    (dict(latents=torch.zeros(2, 3, 20), location=torch.zeros(2, 4, 1)), r"location must be shaped"),
    (dict(latents=torch.zeros(2, 3, 20), scale=torch.zeros(2, 3, 3)), r"scale must be shaped"),
    (dict(latents=torch.zeros(1, 3, 20), scale=torch.full((1, 3, 1), float("inf"))), "scale contains NaN"),
])
def test_a_motion_refuses_to_exist_in_a_bad_state(fields, message):
    with pytest.raises(MotionError, match=message):
        Motion(**fields)


def _with_attributes(takes=2, frames=30):
    g = torch.Generator().manual_seed(5)
    return Motion(latents=torch.randn(takes, frames, 20, generator=g), alpha0=torch.zeros(1, 20),
                  seeds=tuple(range(takes)), pose_deg=torch.randn(takes, frames, 3, generator=g) * 20,
                  location=torch.rand(takes, frames, 1, generator=g), scale=torch.rand(takes, frames, 1, generator=g),
                  variant="mfcc_full_control")


def test_take_selection_slices_the_variance_attributes():
    motion = _with_attributes()
    take = select_take(motion, -1)
    for name in ("pose_deg", "location", "scale"):
        assert torch.equal(getattr(take, name), getattr(motion, name)[1:2]), name
    assert take.seeds == (1,) and take.note == "take 1 of 2"
    bare = select_take(Motion(latents=torch.zeros(2, 3, 20)), 0)
    assert bare.pose_deg is None and bare.location is None and bare.scale is None


def test_latent_edits_keep_the_variance_attributes_and_cuts_cut_them():
    motion = _with_attributes()
    for edited in (smooth(motion, 2.0), scale_strength(motion, 0.5, head=0.3)):
        assert not torch.equal(edited.latents, motion.latents)
        for name in ("pose_deg", "location", "scale"):
            assert torch.equal(getattr(edited, name), getattr(motion, name)), name
    short = Motion(latents=torch.zeros(1, 12, 20))
    cut = blend(motion, short, 0.5)
    assert cut.num_frames == 12 and torch.equal(cut.pose_deg, motion.pose_deg[:, :12])
    assert torch.equal(cut.scale, motion.scale[:, :12]) and cut.seeds == motion.seeds
    # a single take blended with two takes: its attributes stand for both
    one = select_take(motion, 0)
    spread = blend(one, motion, 0.25)
    assert spread.num_takes == 2 and torch.equal(spread.location, motion.location[:1].expand(2, -1, -1))
    assert blend(short, motion, 0.5).pose_deg is None  # the first motion's (absent) attributes


def test_blend_takes_a_curve_in_the_keyframe_syntax(synthetic):
    a = synthetic[0]
    b = Motion(latents=torch.randn(2, FRAMES, 20, generator=torch.Generator().manual_seed(6)))
    out = blend(a, b, "0: 0; 2s: 1")  # 2 s = frame 50
    assert torch.equal(out.latents[:, 0], a.latents[:, 0]) and torch.equal(out.latents[:, 50:], b.latents[:, 50:])
    assert torch.allclose(out.latents[:, 25], (a.latents[:, 25] + b.latents[:, 25]) / 2, atol=1e-6)
    legacy = blend(a, b, "0:0, 50:1")  # the node's former 'frame:weight' pairs read the same
    assert torch.equal(legacy.latents, out.latents)
    assert "not reached" in blend(a, b, "0: 0; 400: 1").note
    assert "clamped" in blend(a, b, "0: -1; 10: 2").note
    with pytest.raises(ControlError, match=r"blend curve line 1 .*'0: x'.*the value must be a number"):
        blend(a, b, "0: x")


def test_save_load_roundtrip_is_bit_exact(synthetic, tmp_path):
    motion = synthetic[0]
    path = save_motion(motion, tmp_path / "sub" / "take.safetensors")
    back = load_motion(path)
    assert torch.equal(back.latents, motion.latents) and torch.equal(back.alpha0, motion.alpha0)
    assert back.latents.dtype == torch.float32
    assert (back.fps, back.variant, back.seeds, back.note) == (25.0, "mfcc_full_control", (7, 8), "sampled")
    odd = Motion(latents=motion.latents[:1, :7], fps=29.97, variant="", alpha0=None, seeds=())
    back = load_motion(save_motion(odd, tmp_path / "odd.safetensors"))
    assert back.fps == 29.97 and back.alpha0 is None and back.seeds == () and torch.equal(back.latents, odd.latents)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.safetensors", "sub"]  # no temporary files left


def test_motion_files_keep_the_variance_attributes_and_read_version_1(tmp_path):
    from safetensors.torch import save_file

    motion = _with_attributes()
    back = load_motion(save_motion(motion, tmp_path / "v2.safetensors"))
    for name in ("latents", "alpha0", "pose_deg", "location", "scale"):
        assert torch.equal(getattr(back, name), getattr(motion, name)), name
    # a file written before the attributes existed (format version 1)
    save_file({"latents": motion.latents, "alpha0": motion.alpha0}, str(tmp_path / "v1.safetensors"),
              metadata={"format": "anitalker-motion", "version": "1", "fps": "25.0", "variant": "mfcc_pose_only",
                        "seeds": "[3, 4]", "note": "old"})
    old = load_motion(tmp_path / "v1.safetensors")
    assert old.pose_deg is None and old.location is None and old.scale is None
    assert torch.equal(old.latents, motion.latents) and old.seeds == (3, 4) and old.note == "old"
    # attributes that do not fit the latents mean a damaged file
    save_file({"latents": motion.latents, "pose_deg": torch.zeros(2, 5, 3)}, str(tmp_path / "bad.safetensors"),
              metadata={"format": "anitalker-motion", "version": "2"})
    with pytest.raises(MotionError, match=r"bad\.safetensors: the motion's pose_deg must be shaped .*damaged"):
        load_motion(tmp_path / "bad.safetensors")


def test_load_refuses_missing_foreign_and_damaged_files(synthetic, tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(MotionError, match="does not exist"):
        load_motion(tmp_path / "nope.safetensors")
    save_file({"weight": torch.zeros(3)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(MotionError, match="not an AniTalker motion file"):
        load_motion(tmp_path / "model.safetensors")
    save_file({"weight": torch.zeros(3)}, str(tmp_path / "nolatents.safetensors"),
              metadata={"format": "anitalker-motion", "version": "1"})
    with pytest.raises(MotionError, match="no 'latents'"):
        load_motion(tmp_path / "nolatents.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"garbage")
    with pytest.raises(MotionError, match="could not read"):
        load_motion(tmp_path / "junk.safetensors")
    good = save_motion(synthetic[0], tmp_path / "good.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(good[: len(good) // 2])
    with pytest.raises(MotionError, match="could not read"):
        load_motion(tmp_path / "cut.safetensors")
    save_file({"latents": torch.zeros(1, 5, 20)}, str(tmp_path / "future.safetensors"),
              metadata={"format": "anitalker-motion", "version": "9"})
    with pytest.raises(MotionError, match="newer"):
        load_motion(tmp_path / "future.safetensors")


def test_smoothing_a_sampled_motion_reduces_jitter_and_keeps_its_slow_path():
    """On motion really sampled by the diffusion generator (fixture weights, fixture speech)."""
    from tests.support.golden import generator, io

    g = generator("mfcc_pose_only")
    s = io("stage2")
    noise = torch.randn((1, 40, 20), generator=torch.Generator().manual_seed(1))
    latents, _ = g.sample(g.condition(s["mfcc"][:160][None], s["wa"], s["alpha0"]), noise, steps=10)
    sampled = Motion(latents=latents, variant="mfcc_pose_only", alpha0=s["alpha0"])
    out = smooth(sampled, 1.0)
    assert jitter(out.latents) < 0.6 * jitter(sampled.latents)
    # slow path (below 1 Hz: head movement) moves by less than 10% of the motion's spread
    slow_before, slow_after = lowpass(sampled.latents, 1.0, 25.0), lowpass(out.latents, 1.0, 25.0)
    assert float((slow_after - slow_before).abs().mean()) < 0.1 * float(sampled.latents.std())
