"""Motion plots: the right panels, lines and shaded pauses, as an IMAGE; no pyplot state touched."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from tests.support.speech_motion import RATE, speech_like_latents, speech_with_pause

from anitalker_core.audio.voice_activity import detect_voice_activity
from anitalker_core.errors import AniTalkerError, MotionError
from anitalker_core.motion.calm_silence import calm_silence
from anitalker_core.motion.plot import figure_to_image, motion_figure, motion_series, plot_motion
from anitalker_core.types import Motion


@pytest.fixture(scope="module")
def take_pair():
    wave = speech_with_pause()
    activity = detect_voice_activity(wave, RATE)
    frames = activity.num_frames
    t = torch.arange(frames) / 25
    pose = torch.stack([10 * torch.sin(2 * math.pi * 0.2 * t), 3 * torch.cos(t), 0 * t], -1)
    raw = Motion(latents=speech_like_latents(frames, takes=2), seeds=(5, 6), pose_deg=torch.stack([pose, -pose]))
    return raw, calm_silence(raw, activity), activity


def test_panels_lines_and_pauses(take_pair):
    raw, calm, activity = take_pair
    fig = motion_figure([("raw", raw), ("calmed", calm)], activity)
    head, mouth, pose = fig.axes
    assert [line.get_label() for line in head.get_lines()] == ["raw take 0 seed 5", "raw take 1 seed 6",
                                                             "calmed take 0 seed 5", "calmed take 1 seed 6"]
    assert len(pose.get_lines()) == 4 * 3 + 1  # yaw, pitch, roll per take, plus the zero line
    yaw = pose.get_lines()[0].get_ydata()
    assert max(abs(yaw)) == pytest.approx(10, abs=0.05)  # degrees, as the variance adapter gave them
    for ax in (head, mouth, pose):
        spans = [p.get_x() for p in ax.patches]
        assert spans == pytest.approx([p.start_s for p in activity.pauses])
    assert "pause (3)" in [t.get_text() for t in head.get_legend().get_texts()]
    assert pose.get_xlabel() == "time (s)"


def test_no_pose_panel_without_pose_and_no_shading_without_audio(take_pair):
    raw, _, _ = take_pair
    fig = motion_figure([("", Motion(latents=raw.latents[:1]))])
    assert len(fig.axes) == 2 and not fig.axes[0].patches
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["motion"]


def test_series_measure_head_speed_and_mouth_energy():
    frames = 250
    t = torch.arange(frames, dtype=torch.float64) / 25
    still = Motion(latents=torch.full((1, frames, 20), 0.3))
    _, speed, mouth = motion_series(still)
    assert abs(speed).max() < 1e-9 and abs(mouth).max() < 1e-9
    mouth_only = Motion(latents=(0.2 * torch.sin(2 * math.pi * 5 * t))[None, :, None].expand(1, frames, 20).float())
    time, speed, mouth = motion_series(mouth_only)
    assert time[25] == pytest.approx(1.0)
    assert float(mouth[0, 50:200].mean()) == pytest.approx(0.2 / math.sqrt(2) * math.sqrt(20), rel=0.05)
    raw_speed = 0.2 * 2 * math.pi * 5 * math.sqrt(20)  # latent units per second of the 5 Hz motion itself
    assert float(speed[0, 50:200].max()) < 0.01 * raw_speed  # a 5 Hz mouth rhythm is not head motion


def test_image_is_a_comfy_image_and_pyplot_is_untouched(take_pair):
    raw, calm, activity = take_pair
    had_pyplot = "matplotlib.pyplot" in sys.modules
    image = plot_motion([("raw", raw), ("calmed", calm)], activity, width=640, height=400)
    assert image.shape == (1, 400, 640, 3) and image.dtype == torch.float32
    assert 0 <= float(image.min()) and float(image.max()) <= 1 and float(image.std()) > 0.05
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot
    blank = figure_to_image(motion_figure([("", raw)], width=640, height=400))
    assert not torch.equal(blank, image)


def test_bad_plot_requests_are_clear_errors(take_pair):
    raw, _, _ = take_pair
    with pytest.raises(MotionError, match="at most 8"):
        motion_figure([(str(i), raw) for i in range(5)])
    with pytest.raises(AniTalkerError, match="width must be a whole number of pixels from 64"):
        motion_figure([("", raw)], width=10)
    with pytest.raises(MotionError, match="nothing to plot"):
        motion_figure([])
    with pytest.raises(MotionError, match="the motion 'b' is not an AniTalker motion"):
        motion_figure([("a", raw), ("b", "not a motion")])
    with pytest.raises(MotionError, match="pose_deg must be shaped"):  # a damaged pose never reaches the plot
        Motion(latents=raw.latents, pose_deg=torch.zeros(2, 5))
