"""Variance controls: official normalisation, keyframes (text and JSON), clamping notes, every malformed input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anitalker_core.errors import ControlError
from anitalker_core.motion.control import curve, make_control, resolve
from anitalker_core.motion.keyframes import parse_curve, parse_keyframes
from anitalker_core.types import VarianceControl


def test_constant_control_matches_the_official_demo_signals():
    # demo.py: pose = cat(yaw, pitch, roll) in -1..1 (degrees / 90), location and scale (1, F, 1) constants
    r = resolve(make_control(yaw=22.5, pitch=-9, roll=4.5, location=0.3, scale=0.7), 10)
    assert r.pose.shape == (1, 10, 3) and r.location.shape == r.scale.shape == (1, 10, 1)
    expected = torch.tensor([0.25, -0.1, 0.05]).expand(1, 10, 3)
    assert torch.allclose(r.pose, expected, atol=1e-7)
    assert torch.allclose(r.location, torch.full((1, 10, 1), 0.3))
    assert torch.allclose(r.scale, torch.full((1, 10, 1), 0.7))
    assert r.pose.dtype == torch.float32 and r.note == ""
    default = resolve(make_control(), 4)
    assert torch.equal(default.pose, torch.zeros(1, 4, 3)) and torch.equal(default.location, torch.full((1, 4, 1), 0.5))


def test_keyframes_interpolate_inherit_and_hold():
    c = make_control(pitch=10, keyframes="0: yaw=0\n10: yaw=20 # turn\n1s: yaw=-20, scale = 0.8")
    assert c.frames == (0, 10, 25)
    r = resolve(c, 40)
    yaw = r.pose[0, :, 0] * 90
    assert yaw[0] == pytest.approx(0) and yaw[5] == pytest.approx(10, abs=1e-4) and yaw[10] == pytest.approx(20)
    assert yaw[25] == pytest.approx(-20) and yaw[39] == pytest.approx(-20)  # held after the last key
    assert torch.allclose(r.pose[0, :, 1] * 90, torch.full((40,), 10.0))  # pitch inherited from the constant
    # scale glides from the constant 0.5 at frame 10 (inherited) to 0.8 at frame 25
    assert float(r.scale[0, 10]) == pytest.approx(0.5) and float(r.scale[0, 39]) == pytest.approx(0.8)
    assert float(r.scale[0, 0]) == pytest.approx(0.5)


def test_semicolons_times_and_a_first_key_after_zero():
    keys = parse_keyframes("20: yaw=30; 2.5s: roll=-5", dict(yaw=1, pitch=2, roll=3, location=0.5, scale=0.5))
    assert keys == [(20, dict(yaw=30, pitch=2, roll=3, location=0.5, scale=0.5)),
                    (62, dict(yaw=30, pitch=2, roll=-5, location=0.5, scale=0.5))]  # 2.5 s * 25 fps, rounded
    c = make_control(yaw=-10, keyframes="20: yaw=30")
    assert c.frames == (0, 20)  # the constants hold at frame 0 and glide to the first key
    yaw = resolve(c, 30).pose[0, :, 0] * 90
    assert yaw[0] == pytest.approx(-10) and yaw[10] == pytest.approx(10) and yaw[29] == pytest.approx(30)


def test_json_keyframes_timed_per_frame_and_pose_triples():
    timed = resolve(make_control(keyframes='[{"frame": 0, "yaw": 0}, {"time": 0.4, "yaw": 45}]'), 20)
    assert float(timed.pose[0, 10, 0]) == pytest.approx(0.5) and float(timed.pose[0, 5, 0]) == pytest.approx(0.25)
    per_frame = resolve(make_control(keyframes='[{"scale": 0.1}, {"scale": 0.2}, {"scale": 0.9}]'), 5)
    assert torch.allclose(per_frame.scale[0, :, 0], torch.tensor([0.1, 0.2, 0.9, 0.9, 0.9]))
    triples = resolve(make_control(keyframes="[[9, 18, -27], [90, 0, 0]]"), 3)
    assert torch.allclose(triples.pose[0], torch.tensor([[0.1, 0.2, -0.3], [1, 0, 0], [1, 0, 0]]))


def test_out_of_range_values_are_clamped_and_reported():
    c = make_control(yaw=150, location=1.4, keyframes="10: pitch=-200 scale=-1")
    assert "yaw/pitch beyond +-90 degrees was clamped" in c.note and "trained" in c.note
    assert "face location outside 0..1" in c.note and "face scale outside 0..1" in c.note
    r = resolve(c, 12)
    assert float(r.pose[0, 0, 0]) == 1.0 and float(r.pose[0, 11, 1]) == -1.0
    assert float(r.location.max()) == 1.0 and float(r.scale[0, 11]) == 0.0
    assert make_control(yaw=90, location=1.0).note == ""  # the limits themselves are fine


def test_keyframes_beyond_the_audio_are_reported():
    r = resolve(make_control(keyframes="0: yaw=0; 100: yaw=30; 500: yaw=90"), 100)
    assert "2 keyframe(s)" in r.note and "not reached" in r.note
    assert float(r.pose[0, 99, 0]) < 30 / 90  # still gliding towards the unreached key
    assert resolve(make_control(keyframes="0: yaw=0; 99: yaw=30"), 100).note == ""


@pytest.mark.parametrize("text, message", [
    ("yaw=20", r"line 1 \('yaw=20'\) has no ':'"),
    ("0: yaw=0\nten: yaw=20", r"line 2 .*'ten' is not a frame number .*write keyframes like '0: yaw=0"),
    ("2.5: yaw=1", "frame numbers are whole; add s for seconds"),
    ("5: yaw", r"'yaw' is not name=value.*yaw=20"),
    ("0: yaw=1; 5: nose=3", r"line 1 part 2 .*unknown value 'nose'"),
    ("5: yaw=abc", "yaw must be a number"),
    ("5: yaw=nan", "finite"),
    ("5: yaw=1e999", "finite"),
    ("-3: yaw=1", "negative"),
    ("99999999999: yaw=1", "beyond"),
    ("infs: yaw=1", "not a frame number"),
    ("5:", "sets no values"),
    ("[{\"frame\": 0, \"yaw\": 1}, {\"yaw\": 2}]", "every object has a 'frame'"),
    ("[[1, 2]]", "needs 3 numbers"),
    ("[{\"frame\": 1.5, \"yaw\": 2}]", "whole number"),
    ("[{\"time\": 1e308, \"yaw\": 2}]", "beyond"),
    ("[{\"yaw\": NaN}]", "finite"),
    ("[{\"nose\": 1}]", "unknown value 'nose'"),
    ("[1, 2", "do not parse"),
    ("[]", "non-empty"),
])
def test_malformed_keyframes_name_the_problem(text, message):
    with pytest.raises(ControlError, match=message):
        make_control(keyframes=text)


@pytest.mark.parametrize("kwargs, message", [
    (dict(yaw=float("nan")), "yaw must be a finite number"),
    (dict(scale=float("inf")), "scale must be a finite number"),
    (dict(pitch="up"), "pitch must be a number"),
    (dict(keyframes=5), "keyframes must be text"),
])
def test_malformed_constants_are_control_errors(kwargs, message):
    with pytest.raises(ControlError, match=message):
        make_control(**kwargs)


def test_resolve_refuses_bad_frame_counts_and_broken_controls():
    for frames in (0, -1, 2.5, True):
        with pytest.raises(ControlError, match="positive whole number"):
            resolve(make_control(), frames)
    ok = make_control(keyframes="0: yaw=1; 5: yaw=2")
    broken = [
        (VarianceControl(pose_deg=torch.zeros(2, 2), location=torch.zeros(2, 1), scale=torch.zeros(2, 1)),
         r"shapes pose \(2, 2\).*expected \(K,3\)"),
        (VarianceControl(pose_deg=ok.pose_deg, location=ok.location, scale=ok.scale, frames=(5, 0)),
         "must be non-negative and increasing"),
        (VarianceControl(pose_deg=ok.pose_deg * float("nan"), location=ok.location, scale=ok.scale,
                         frames=ok.frames), "pose contains NaN"),
    ]
    for control, message in broken:
        with pytest.raises(ControlError, match=message):
            resolve(control, 10)
    with pytest.raises(ControlError, match="not an AniTalker control"):
        resolve("yaw=3", 10)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=5, max_size=5), st.integers(1, 300))
def test_any_numbers_give_a_valid_control_or_a_control_error(values, frames):
    try:
        r = resolve(make_control(*values), frames)
    except ControlError:
        assert not all(math.isfinite(v) for v in values)
        return
    assert all(math.isfinite(v) for v in values)
    assert r.pose.shape == (1, frames, 3) and r.location.shape == r.scale.shape == (1, frames, 1)
    for t in (r.pose, r.location, r.scale):
        assert torch.isfinite(t).all()
    assert float(r.pose.abs().max()) <= 1
    assert 0 <= float(r.location.min()) and float(r.location.max()) <= 1
    assert 0 <= float(r.scale.min()) and float(r.scale.max()) <= 1


_ALPHABET = list("0123456789 :;,=.-+es#\n[]{}\"yawpitchrollocsnfx_") + ["yaw=", "scale=", "frame", "time", "inf", "nan"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_ALPHABET), max_size=40).map("".join), st.integers(1, 200))
def test_any_keyframe_text_parses_or_raises_a_control_error(text, frames):
    try:
        r = resolve(make_control(keyframes=text), frames)
    except ControlError as exc:
        assert str(exc)  # always says something
        return
    assert r.pose.shape == (1, frames, 3) and torch.isfinite(r.pose).all() and float(r.pose.abs().max()) <= 1
    assert torch.isfinite(r.location).all() and torch.isfinite(r.scale).all()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.sampled_from(["yaw", "pitch", "roll", "location", "scale"]),
                          st.floats(-200, 200)), min_size=1, max_size=6), st.integers(1, 400))
def test_generated_keyframes_hit_their_values_on_their_frames(keys, frames):
    text = "\n".join(f"{f}: {name}={v!r}" for f, name, v in keys)
    r = resolve(make_control(keyframes=text), frames)
    last = {}
    for f, name, v in keys:  # later duplicates on the same frame win
        last[(f, name)] = v
    column = {"yaw": (r.pose, 0, 90, -1, 1), "pitch": (r.pose, 1, 90, -1, 1), "roll": (r.pose, 2, 90, -1, 1),
              "location": (r.location, 0, 1, 0, 1), "scale": (r.scale, 0, 1, 0, 1)}
    for (f, name), v in last.items():
        if f < frames:
            t, c, unit, lo, hi = column[name]
            assert float(t[0, f, c]) == pytest.approx(min(max(v / unit, lo), hi), abs=1e-5)


def test_curves_use_the_keyframe_syntax_and_glide_like_the_controls():
    assert parse_curve("0: 0; 2s: 1\n100: 0.5  # comment") == [(0, 0.0), (50, 1.0), (100, 0.5)]
    assert parse_curve("0:0, 50:1 100:0.5") == [(0, 0.0), (50, 1.0), (100, 0.5)]  # commas or spaces between keys
    values, note = curve("10: 0; 20: 1", 30)
    assert values.shape == (30,) and values.dtype == torch.float32 and note == ""
    assert float(values[0]) == 0 and float(values[15]) == pytest.approx(0.5) and float(values[29]) == 1
    # the same glide as a yaw keyframe over the same keys
    yaw = resolve(make_control(keyframes="10: yaw=0; 20: yaw=90"), 30).pose[0, :, 0]
    assert torch.allclose(values, yaw, atol=1e-6)
    assert "not reached" in curve("0: 0; 99: 1", 30)[1]
    # several keys per line with commas, in the controls too
    assert make_control(keyframes="0: yaw=1, pitch=2, 10: yaw=3").frames == (0, 10)


@pytest.mark.parametrize("text, message", [
    ("50 1", r"curve line 1 \('50 1'\) has no ':' after the frame; write curve like '0: 0'"),
    ("0: a", r"curve line 1 .*the value must be a number"),
    ("x: 1", r"'x' is not a frame number or a time like 2.5s; write curve like"),
    ("# nothing", "the curve has no keys"),
    ("0: inf", "finite"),
])
def test_malformed_curves_name_the_problem(text, message):
    with pytest.raises(ControlError, match=message):
        parse_curve(text)
