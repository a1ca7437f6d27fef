"""Upscale models through spandrel: read tensors-only, usable outside inference mode, clear when missing."""

from __future__ import annotations

import builtins

import pytest
import torch
from tests.support.image_models import write_upscaler

from anitalker_core.errors import CheckpointError
from anitalker_core.image.upscale import load_upscale_model


def test_a_real_esrgan_file_upscales_frames_2x_in_0_to_1(tmp_path):
    upscaler = load_upscale_model(write_upscaler(tmp_path / "RealESRGAN_x2.pth"))
    assert upscaler.scale == 2 and "RealESRGAN_x2.pth" in upscaler.name
    frames = torch.rand(3, 3, 24, 24)
    out = upscaler(frames)  # outside torch.inference_mode, as a node or a test calls it
    assert out.shape == (3, 3, 48, 48) and out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    out.mul_(0.5)  # an ordinary tensor: callers may work on it in place
    upscaler.batch = 1  # slicing into several calls gives the same frames
    assert torch.allclose(upscaler(frames), out * 2, atol=1e-6)


def test_wrong_files_and_a_missing_spandrel_are_clear_errors(tmp_path, monkeypatch):
    not_an_upscaler = tmp_path / "stage1.pth"
    torch.save({"enc.weight": torch.zeros(3)}, not_an_upscaler)
    with pytest.raises(CheckpointError, match="not an upscale or face model spandrel knows"):
        load_upscale_model(not_an_upscaler)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_upscale_model(tmp_path / "missing.pth")
    real_import = builtins.__import__

    def no_spandrel(name, *args, **kwargs):
        if name == "spandrel":
            raise ImportError("No module named 'spandrel'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_spandrel)
    with pytest.raises(CheckpointError, match="pip install spandrel"):
        load_upscale_model(write_upscaler(tmp_path / "x.pth"))
