"""Variance controls: constants, keyframes, clamping, and every malformed input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anitalker_core.control import make_control, resolve
from anitalker_core.errors import ControlError


def test_constant_control_matches_the_official_normalisation():
    r = resolve(make_control(yaw=30, pitch=-9, roll=4.5, location=0.3, scale=0.7), 10)
    assert r.pose.shape == (1, 10, 3) and r.location.shape == r.scale.shape == (1, 10, 1)
    assert torch.allclose(r.pose[0, 0], torch.tensor([30 / 90, -9 / 90, 4.5 / 90]))
    assert float(r.location[0, 5]) == pytest.approx(0.3) and float(r.scale[0, 9]) == pytest.approx(0.7)


def test_keyframes_interpolate_inherit_and_hold():
    c = make_control(pitch=10, keyframes="0: yaw=0\n10: yaw=20 # turn\n1s: yaw=-20 scale=0.8")
    r = resolve(c, 40)
    yaw = r.pose[0, :, 0] * 90
    assert yaw[0] == pytest.approx(0) and yaw[5] == pytest.approx(10) and yaw[10] == pytest.approx(20)
    assert yaw[25] == pytest.approx(-20) and yaw[39] == pytest.approx(-20)  # held after the last key
    assert torch.allclose(r.pose[0, :, 1] * 90, torch.full((40,), 10.0))  # pitch inherited everywhere
    assert float(r.scale[0, 0]) == pytest.approx(0.5) and float(r.scale[0, 39]) == pytest.approx(0.8)


def test_out_of_range_values_are_clamped_and_reported():
    c = make_control(yaw=150, location=1.4)
    assert "clamped" in c.note
    r = resolve(c, 3)
    assert float(r.pose.max()) == 1.0 and float(r.location.max()) == 1.0


def test_keyframes_beyond_the_audio_are_reported():
    r = resolve(make_control(keyframes="0: yaw=0; 500: yaw=30"), 100)
    assert "not reached" in r.note


@pytest.mark.parametrize("text, message", [
    ("yaw=20", "has no ':'"),
    ("ten: yaw=20", "not a frame number"),
    ("5: yaw", "not name=value"),
    ("5: nose=3", "unknown value 'nose'"),
    ("5: yaw=abc", "must be a number"),
    ("5: yaw=nan", "finite"),
    ("-3: yaw=1", "negative"),
    ("5:", "sets no values"),
])
def test_malformed_keyframes_name_the_problem(text, message):
    with pytest.raises(ControlError, match=message):
        make_control(keyframes=text)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=5, max_size=5), st.integers(1, 300))
def test_any_numbers_give_a_valid_control_or_a_control_error(values, frames):
    try:
        r = resolve(make_control(*values), frames)
    except ControlError:
        assert not all(math.isfinite(v) for v in values)
        return
    assert r.pose.shape == (1, frames, 3) and torch.isfinite(r.pose).all()
    assert float(r.pose.abs().max()) <= 1 and 0 <= float(r.location.min()) and float(r.scale.max()) <= 1


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789 :;=.-s#\nyawpitchrollocsenfx")), max_size=60),
       st.integers(1, 200))
def test_any_keyframe_text_parses_or_raises_a_control_error(text, frames):
    try:
        r = resolve(make_control(keyframes=text), frames)
    except ControlError:
        return
    assert r.pose.shape == (1, frames, 3) and torch.isfinite(r.pose).all()
