"""The pipeline's records: a sampled Motion carries the pose, location and scale the variance adapter used,
and a batch of portraits follows the pack's one batch policy."""

from __future__ import annotations

from tests.support import golden
import pytest
import torch

from anitalker_core.errors import PortraitError
from anitalker_core.image.portrait_crop import crop_portrait, single_image
from anitalker_core.motion.control import make_control
from anitalker_core.pipeline import generate_motion
from anitalker_core.types import AudioFeatures, PortraitCode

CALL_TOL = 1e-4  # the fixtures' tolerance for variance-adapter predictions


@pytest.fixture(scope="module")
def inputs():
    s = golden.io("stage2")
    portrait = PortraitCode(image=torch.zeros(1, 3, 256, 256), wa=s["wa"], alpha0=s["alpha0"], feats=())
    mfcc = AudioFeatures(kind="mfcc", values=s["mfcc"][:160], num_frames=40, duration_s=1.6)
    hubert = AudioFeatures(kind="hubert", values=s["hubert_layers"], num_frames=40, duration_s=1.6)
    return s, portrait, mfcc, hubert


def test_without_control_the_motion_carries_the_adapters_predictions(inputs):
    s, portrait, mfcc, _ = inputs
    motion = generate_motion(golden.generator("mfcc_full_control"), portrait, mfcc, steps=2, takes=2)
    expected = "mfcc_full_control.control0.steps50.call0.pred_"
    assert motion.pose_deg.shape == (2, 40, 3) and motion.location.shape == motion.scale.shape == (2, 40, 1)
    for take in range(2):  # speech decides them, so every take has the same
        assert float((motion.pose_deg[take] / 90 - s[expected + "pose"][0]).abs().max()) <= CALL_TOL
        assert float((motion.location[take] - s[expected + "location"][0]).abs().max()) <= CALL_TOL
        assert float((motion.scale[take] - s[expected + "scale"][0]).abs().max()) <= CALL_TOL


def test_with_control_the_motion_carries_the_control_and_only_the_generators_attributes(inputs):
    _, portrait, mfcc, hubert = inputs
    control = make_control(yaw=30, pitch=-9, roll=4.5, location=0.2, scale=0.9)
    posed = generate_motion(golden.generator("mfcc_pose_only"), portrait, mfcc, control=control, steps=2)
    assert torch.allclose(posed.pose_deg, torch.tensor([30.0, -9, 4.5]).expand(1, 40, 3), atol=1e-4)
    assert posed.location is None and posed.scale is None  # pose only: no location or scale in the model
    speech_only = generate_motion(golden.generator("hubert_audio_only"), portrait, hubert, control=control, steps=2)
    assert speech_only.pose_deg is None and speech_only.location is None and speech_only.scale is None
    assert "no pose/location/scale control" in speech_only.note and "ignored" in speech_only.note


def test_a_batch_of_portraits_uses_the_first_and_says_so():
    first, second = torch.rand(40, 30, 3), torch.rand(40, 30, 3)
    crop, _, note = crop_portrait(torch.stack([first, second]), mode="full")
    assert "batch of 2 images" in note and "first" in note
    assert torch.equal(crop, crop_portrait(first, mode="full")[0])
    one, note = single_image(first[None])
    assert torch.equal(one, first) and note == ""  # a batch of one is simply that image
    with pytest.raises(PortraitError, match="portrait.*empty batch"):
        crop_portrait(torch.zeros(0, 40, 30, 3))


def test_the_package_names_its_main_api_and_loads_it_only_when_asked():
    import subprocess
    import sys

    import anitalker_core

    for name in anitalker_core.__all__:
        assert getattr(anitalker_core, name) is not None, name
    light = subprocess.run([sys.executable, "-c", "import sys, anitalker_core; print('torch' in sys.modules)"],
                           capture_output=True, text=True, timeout=60)
    assert light.stdout.strip() == "False", light.stderr  # importing the package alone loads no torch
