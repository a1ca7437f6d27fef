"""Keyframes from a take's pose: text that Variance Control reads back as the same curves, with few keys."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anitalker_core.errors import ControlError
from anitalker_core.motion.control import make_control, resolve
from anitalker_core.motion.keyframes import KEY_TOLERANCE, KEY_TOLERANCE_DEG, format_keyframes, motion_keyframes
from anitalker_core.types import Motion

ROUNDING_DEG, ROUNDING = 0.005, 0.0005  # the written values have 2 and 3 decimals


def head_motion(frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Head-like curves: pose sways of 5-20 degrees at 0.1-0.4 Hz, location and scale drifting slowly."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(frames, dtype=torch.float64) / 25
    amp, hz, phase = torch.rand(3, 3, generator=g, dtype=torch.float64)
    pose = torch.stack([(5 + 15 * amp[i]) * torch.sin(2 * math.pi * (0.1 + 0.3 * hz[i]) * t + 6 * phase[i])
                        for i in range(3)], -1)
    location = 0.5 + 0.1 * torch.sin(2 * math.pi * 0.05 * t)[:, None]
    scale = 0.45 + 0.05 * torch.cos(2 * math.pi * 0.08 * t)[:, None]
    return pose.float(), location.float(), scale.float()


def read_back(text: str, frames: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r = resolve(make_control(keyframes=text), frames)
    return r.pose[0] * 90, r.location[0], r.scale[0]


def test_round_trip_within_the_stated_tolerance_with_a_few_keys_per_second():
    frames = 500
    pose, location, scale = head_motion(frames)
    text = format_keyframes(pose, location, scale)
    back_pose, back_location, back_scale = read_back(text, frames)
    assert float((back_pose - pose).abs().max()) <= KEY_TOLERANCE_DEG + ROUNDING_DEG + 1e-4
    assert float((back_location - location).abs().max()) <= KEY_TOLERANCE + ROUNDING + 1e-6
    assert float((back_scale - scale).abs().max()) <= KEY_TOLERANCE + ROUNDING + 1e-6
    keys = [line for line in text.splitlines() if line.strip()]
    assert 10 <= len(keys) <= 6 * frames / 25  # a few keys per second, not one per frame
    assert keys[0].startswith("0: yaw=") and keys[-1].startswith(f"{frames - 1}: ")
    assert keys[1].split("#")[1].strip().endswith(" s")  # each key says its time


def test_looser_tolerance_gives_fewer_keys_and_constant_values_are_written_once():
    pose, location, scale = head_motion(250, seed=1)
    fine = format_keyframes(pose, location, scale, tolerance_deg=0.2)
    coarse = format_keyframes(pose, location, scale, tolerance_deg=3.0)
    assert len(coarse.splitlines()) < len(fine.splitlines())
    constant = format_keyframes(torch.tensor([[12.0, -3.0, 0.5]]).expand(250, 3), torch.full((250, 1), 0.5))
    assert constant == "0: yaw=12 pitch=-3 roll=0.5 location=0.5  # 0.00 s"
    steady_location = format_keyframes(pose, torch.full((250, 1), 0.4))
    assert steady_location.count("location=") == 1  # later keys inherit it


@settings(max_examples=25, deadline=None)
@given(frames=st.integers(1, 300), seed=st.integers(0, 10_000), tolerance=st.floats(0.1, 5.0))
def test_any_pose_curve_round_trips(frames, seed, tolerance):
    g = torch.Generator().manual_seed(seed)
    pose = (torch.randn(frames, 3, generator=g).cumsum(0) * 3).clamp(-89, 89)  # a rough random walk
    text = format_keyframes(pose, tolerance_deg=tolerance)
    back, _, _ = read_back(text, frames)
    assert float((back - pose).abs().max()) <= tolerance + ROUNDING_DEG + 1e-4


def test_motion_keyframes_takes_one_take_and_says_what_it_wrote():
    frames = 100
    pose, location, scale = head_motion(frames)
    motion = Motion(latents=torch.zeros(2, frames, 20), seeds=(7, 8), pose_deg=torch.stack([pose, -pose]),
                    location=torch.stack([location, location]), scale=torch.stack([scale, scale]))
    text = motion_keyframes(motion, take=1)
    assert text.startswith("# take 1 (seed 8): ")
    back, _, _ = read_back(text, frames)
    assert float((back + pose).abs().max()) <= KEY_TOLERANCE_DEG + ROUNDING_DEG + 1e-4
    pose_only = motion_keyframes(Motion(latents=torch.zeros(1, frames, 20), pose_deg=pose[None]))
    assert "location=" not in pose_only and "scale=" not in pose_only and "yaw=" in pose_only


def test_motions_without_pose_and_bad_requests_are_clear_errors():
    with pytest.raises(ControlError, match="carries no head pose"):
        motion_keyframes(Motion(latents=torch.zeros(1, 10, 20)))
    posed = Motion(latents=torch.zeros(1, 10, 20), pose_deg=torch.zeros(1, 10, 3))
    with pytest.raises(ControlError, match="take 1 does not exist: this motion has 1 take"):
        motion_keyframes(posed, take=1)
    with pytest.raises(ControlError, match="tolerances must be positive"):
        format_keyframes(torch.zeros(10, 3), tolerance_deg=0)
    with pytest.raises(ControlError, match="pose curve must be \\(frames, 3\\)"):
        format_keyframes(torch.zeros(10, 2))
    with pytest.raises(ControlError, match="different lengths"):
        format_keyframes(torch.zeros(10, 3), torch.zeros(9, 1))
    with pytest.raises(ControlError, match="NaN"):
        format_keyframes(torch.full((10, 3), float("nan")))
