"""Motion editing on a sampled motion: jitter reduction, exact identities, blending and saving."""

from __future__ import annotations

import pytest
import torch

from anitalker_core.ddim import sample_motion
from anitalker_core.errors import MotionError
from anitalker_core.motion_edit import blend, jitter, scale_strength, select_take, smooth
from anitalker_core.motion_generator import MotionGenerator
from anitalker_core.motion_io import load_motion, save_motion
from anitalker_core.types import Motion
from golden import io, state_dict


@pytest.fixture(scope="module")
def sampled():
    """A real sampled motion: the mfcc_pose_only generator (fixture weights) on the fixture speech."""
    g = MotionGenerator("mfcc_pose_only").eval()
    g.load_state_dict({k[10:]: v for k, v in state_dict("mfcc_pose_only").items() if k.startswith("ema_model.")})
    s = io("stage2")
    noise = torch.randn((2, 40, 20), generator=torch.Generator().manual_seed(1))
    latents = sample_motion(g, s["wa"], s["alpha0"], s["mfcc"][:160][None], None, None, None, noise, steps=10)
    return Motion(latents=latents, variant="mfcc_pose_only", alpha0=s["alpha0"], seeds=(1, 2))


def test_smoothing_reduces_jitter_and_keeps_the_slow_path(sampled):
    out = smooth(sampled, 1.0)
    assert jitter(out.latents) < 0.5 * jitter(sampled.latents)
    # the low-frequency path (a 4-frame Gaussian trend) moves by less than 10% of the motion's spread
    slow_before = smooth(sampled, 4.0).latents
    slow_after = smooth(out, 4.0).latents
    spread = float(sampled.latents.std())
    assert float((slow_after - slow_before).abs().mean()) < 0.1 * spread


def test_exact_identities(sampled):
    assert torch.equal(smooth(sampled, 0).latents, sampled.latents)
    assert torch.equal(scale_strength(sampled, 1.0).latents, sampled.latents)
    other = smooth(sampled, 2.0)
    assert torch.equal(blend(sampled, other, 0.0).latents, sampled.latents)
    assert torch.equal(blend(sampled, other, 1.0).latents, other.latents)


def test_strength_scales_around_the_portrait_code(sampled):
    calm = scale_strength(sampled, 0.5)
    center = sampled.alpha0.view(1, 1, -1)
    assert torch.allclose(calm.latents - center, (sampled.latents - center) * 0.5, atol=1e-6)
    head_only = scale_strength(sampled, head=0.0, mouth=1.0)
    assert jitter(head_only.latents) == pytest.approx(jitter(sampled.latents), rel=0.3)
    assert float((head_only.latents - center).abs().mean()) < float((sampled.latents - center).abs().mean())


def test_blend_curves_lengths_and_sizes(sampled):
    short = Motion(latents=sampled.latents[:, :25].clone(), alpha0=sampled.alpha0)
    curve = torch.linspace(0, 1, 25)
    out = blend(sampled, short, curve)
    assert out.num_frames == 25 and "40 and 25 frames" in out.note
    assert torch.equal(out.latents[:, 0], sampled.latents[:, 0]) and torch.equal(out.latents[:, -1], short.latents[:, -1])
    with pytest.raises(MotionError, match="different sizes"):
        blend(sampled, Motion(latents=torch.zeros(1, 10, 12)), 0.5)


def test_empty_and_broken_motions_are_refused(sampled):
    for bad in (Motion(latents=torch.zeros(1, 0, 20)), Motion(latents=torch.full((1, 3, 20), float("nan")))):
        with pytest.raises(MotionError):
            smooth(bad, 1.0)
    with pytest.raises(MotionError, match="take 5 does not exist"):
        select_take(sampled, 5)
    with pytest.raises(MotionError, match="not an AniTalker motion"):
        smooth("motion", 1.0)


def test_save_load_roundtrip_is_bit_exact(sampled, tmp_path):
    path = save_motion(sampled, tmp_path / "take.safetensors")
    back = load_motion(path)
    assert torch.equal(back.latents, sampled.latents) and torch.equal(back.alpha0, sampled.alpha0)
    assert (back.fps, back.variant, back.seeds) == (25.0, "mfcc_pose_only", (1, 2))
    (tmp_path / "junk.safetensors").write_bytes(b"garbage")
    with pytest.raises(MotionError, match="could not read"):
        load_motion(tmp_path / "junk.safetensors")
