"""Calm Silence: the issue's figures on real speech with a 2 s pause, exact identities, clear errors."""

from __future__ import annotations

import pytest
import torch
from tests.support.speech_motion import (PAUSE_AT_S, PAUSE_S, RATE, calm_figures, generated_motion, speech_like_latents,
                           speech_with_pause)

from anitalker_core.audio.voice_activity import Pause, VoiceActivity, detect_voice_activity
from anitalker_core.errors import MotionError
from anitalker_core.motion.calm_silence import calm_silence, calm_weight
from anitalker_core.motion.edit import split_by_speed
from anitalker_core.types import Motion


def pauses_of(wave: torch.Tensor, offset_s: float = 0.0, frames=None) -> tuple[VoiceActivity, Pause]:
    """The voice activity of ``wave`` and its pause where the 2 s were inserted (``offset_s``: where wave starts)."""
    activity = detect_voice_activity(wave, RATE, frames)
    start, end = PAUSE_AT_S - offset_s, PAUSE_AT_S + PAUSE_S - offset_s
    (inserted,) = [p for p in activity.pauses if p.start_s < end and p.end_s > start]
    return activity, inserted


@pytest.fixture(scope="module")
def speech():
    wave = speech_with_pause()
    return (wave, *pauses_of(wave))


@pytest.fixture(scope="module")
def synthetic(speech):
    _, activity, _ = speech
    latents = speech_like_latents(activity.num_frames, seed=0, takes=2)
    return Motion(latents=latents, variant="mfcc_full_control", alpha0=torch.zeros(1, 20), seeds=(3, 4),
                  pose_deg=torch.ones(2, activity.num_frames, 3))


@pytest.fixture(scope="module")
def generated(speech, checkpoints):
    """4.4 s around the pause (1.2 s of speech each side) keep the sampling short."""
    wave = speech[0][int(3.2 * RATE): int(7.6 * RATE)]
    motion = generated_motion(checkpoints.stage2("mfcc_full_control"), wave)
    return (motion, *pauses_of(wave, offset_s=3.2, frames=motion.num_frames))


def assert_issue_figures(motion: Motion, activity: VoiceActivity, pause: Pause) -> None:
    calm = calm_silence(motion, activity, strength=1.0)
    weight = calm_weight(activity)
    for take in range(motion.num_takes):
        fig = calm_figures(motion.latents[take], calm.latents[take], weight, activity.speech, (pause.start, pause.end))
        assert fig.pause_fall >= 0.70, fig  # inside the pause the motion changes at least 70 % less
        assert fig.far_frames_unchanged, fig  # frames > 0.5 s from any pause: bit for bit
        assert fig.largest_ramp_step <= fig.largest_speech_step, fig  # no jump at the fades
    outside = activity.speech
    assert torch.equal(calm.latents[:, outside], motion.latents[:, outside])  # in fact no speech frame changes


def test_issue_figures_on_speech_like_motion(speech, synthetic):
    _, activity, pause = speech
    assert_issue_figures(synthetic, activity, pause)


def test_issue_figures_on_a_generated_motion_for_the_same_speech(generated):
    motion, activity, pause = generated
    assert motion.num_frames == activity.num_frames == 109 and pause.frames >= 45
    assert_issue_figures(motion, activity, pause)


def test_strength_zero_is_bit_identical_and_strength_scales_the_calm(speech, synthetic):
    _, activity, pause = speech
    same = calm_silence(synthetic, activity, strength=0.0)
    assert torch.equal(same.latents, synthetic.latents) and same.latents is not synthetic.latents
    assert "motion unchanged" in same.note
    weight = calm_weight(activity)
    falls = [calm_figures(synthetic.latents[0], calm_silence(synthetic, activity, strength=s).latents[0], weight,
                          activity.speech, (pause.start, pause.end)).pause_fall for s in (0.25, 0.5, 1.0)]
    assert falls[0] < falls[1] < falls[2]


def test_mouth_settles_and_head_keeps_its_share(speech, synthetic):
    _, activity, pause = speech
    inner = slice(pause.start + 8, pause.end - 8)  # away from the 0.2 s ramps

    _, fast_before = split_by_speed(synthetic.latents.double(), 25.0)
    still = calm_silence(synthetic, activity, head=0.0)
    moving = calm_silence(synthetic, activity, head=1.0)
    _, fast_after = split_by_speed(still.latents.double(), 25.0)
    assert fast_after[:, inner].norm() < 0.1 * fast_before[:, inner].norm()  # no mumbling left
    head_speed = [float((m.latents[:, inner][:, 1:] - m.latents[:, inner][:, :-1]).norm(dim=-1).mean())
                  for m in (still, moving)]
    assert head_speed[0] < 0.8 * head_speed[1]
    assert "head motion kept 0" in still.note and f"{pause.start_s:.2f}-{pause.end_s:.2f} s" in still.note


def test_records_other_than_latents_pass_through(speech, synthetic):
    _, activity, _ = speech
    calm = calm_silence(synthetic, activity)
    assert calm.seeds == synthetic.seeds and calm.variant == synthetic.variant
    assert calm.pose_deg is synthetic.pose_deg and calm.alpha0 is synthetic.alpha0
    assert calm.latents.dtype == torch.float32 and calm.latents.shape == synthetic.latents.shape


def test_calm_weight_ramps_inside_pauses_only():
    speech = torch.ones(100, dtype=torch.bool)
    speech[:10] = speech[40:70] = speech[90:] = False
    pauses = (Pause(0, 10, 0.0, 0.4), Pause(40, 70, 1.6, 2.8), Pause(90, 100, 3.6, 4.0))
    activity = VoiceActivity(speech=speech, pauses=pauses, fps=25.0, loudness_db=torch.zeros(100), threshold_db=-40)
    w = calm_weight(activity, ramp_s=0.2)
    assert torch.equal(w[speech], torch.zeros(int(speech.sum()), dtype=torch.float64))
    ramp_in, ramp_out = w[40:45], w[65:70]
    # the clip starts in a pause: no fade in, only out; it ends in one: no fade out
    assert torch.equal(w[:5], torch.ones(5, dtype=torch.float64)) and torch.equal(w[5:10], ramp_out)
    assert torch.equal(w[95:], torch.ones(5, dtype=torch.float64)) and torch.equal(w[90:95], ramp_in)
    assert bool((ramp_in.diff() > 0).all()) and 0 < float(ramp_in[0]) < 0.1 and 0.9 < float(ramp_in[-1]) < 1
    assert torch.allclose(ramp_out, ramp_in.flip(0)) and torch.equal(w[45:65], torch.ones(20, dtype=torch.float64))
    short = VoiceActivity(speech=speech, pauses=(Pause(40, 46, 1.6, 1.84),), fps=25.0,
                          loudness_db=torch.zeros(100), threshold_db=-40)
    ws = calm_weight(short, ramp_s=0.2)[40:46]  # a 6-frame pause fades over 3 frames each side
    assert torch.allclose(ws, ws.flip(0)) and float(ws.max()) < 1 and bool((ws > 0).all())


def test_bad_inputs_are_clear_errors(speech, synthetic):
    _, activity, _ = speech
    with pytest.raises(MotionError, match="calm strength must be from 0 to 1"):
        calm_silence(synthetic, activity, strength=1.5)
    with pytest.raises(MotionError, match="head motion kept in pauses.*0 to 1"):
        calm_silence(synthetic, activity, head=float("nan"))
    shorter = synthetic.first_frames(100)
    with pytest.raises(MotionError, match="detect them with the motion's frame count"):
        calm_silence(shorter, activity)
    with pytest.raises(MotionError, match="expected the voice activity"):
        calm_silence(synthetic, "pauses")
    with pytest.raises(MotionError, match="connect a sampler"):
        calm_silence("motion", activity)
