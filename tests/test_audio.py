"""Audio input handling: files by content, any rate and channel count, and every bad waveform."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anitalker_core.audio_features import MfccFeatures
from anitalker_core.audio_io import load_audio_file, prepare_waveform
from anitalker_core.errors import AudioError
from golden import MEDIA


def test_mp3_data_in_a_wav_named_file_is_decoded_by_content(tmp_path):
    liar = tmp_path / "speech.wav"
    shutil.copy(MEDIA / "english_male.mp3", liar)
    wave, rate = load_audio_file(liar)
    ref, ref_rate = load_audio_file(MEDIA / "english_male.mp3")
    assert rate == ref_rate == 24000 and torch.equal(wave, ref)
    assert 10 < wave.shape[1] / rate < 12


def test_unreadable_and_missing_files(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF....not audio at all" * 10)
    with pytest.raises(AudioError, match="junk.wav"):
        load_audio_file(junk)
    with pytest.raises(AudioError, match="does not exist"):
        load_audio_file(tmp_path / "missing.wav")


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2, 6])
def test_any_rate_and_channel_count_gives_16k_mono(rate, channels):
    t = torch.arange(int(0.5 * rate)) / rate
    tone = torch.sin(2 * math.pi * 220 * t) * 0.5
    wave = tone.repeat(channels, 1)[None]  # ComfyUI AUDIO layout [B, C, T]
    out, note = prepare_waveform(wave, rate)
    assert out.ndim == 1 and abs(out.numel() - 8000) <= 1
    assert ("mixed" in note) == (channels > 1)
    assert float(out.abs().max()) == pytest.approx(0.5, abs=0.02)


def test_batch_of_clips_uses_the_first_and_says_so():
    wave = torch.stack([torch.full((1, 8000), 0.1), torch.full((1, 8000), 0.9)])
    out, note = prepare_waveform(wave, 16000)
    assert "2 clips; only the first is used" in note and float(out.mean()) == pytest.approx(0.1)


@pytest.mark.parametrize("wave, rate, message", [
    (torch.zeros(1, 0), 16000, "empty"),
    (torch.zeros(1, 1, 300), 16000, "shorter than one video frame"),
    (torch.tensor([[0.1, float("nan"), 0.2] * 1000]), 16000, "1000 NaN or infinite samples"),
    (torch.tensor([[0.1, float("inf")] * 2000]), 16000, "NaN or infinite"),
    (torch.zeros(1, 16000), 100, "not plausible"),
    (torch.zeros(2, 2, 2, 2), 16000, "expected audio shaped"),
    ("not a tensor", 16000, "connect a Load Audio node"),
])
def test_bad_waveforms_raise_clear_errors(wave, rate, message):
    with pytest.raises(AudioError, match=message):
        prepare_waveform(wave, rate)


def test_silence_is_accepted_with_a_note():
    out, note = prepare_waveform(torch.zeros(1, 16000), 16000)
    assert "silent" in note and out.abs().max() == 0
    feats = MfccFeatures()(out)
    assert torch.isfinite(feats.values).all() and feats.num_frames == 24


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    samples=st.integers(0, 5000),
    channels=st.integers(1, 8),
    rate=st.one_of(st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]), st.integers(-10, 10 ** 7)),
    scale=st.floats(allow_nan=True, allow_infinity=True, width=32),
)
def test_any_waveform_is_accepted_or_refused_with_an_audio_error(samples, channels, rate, scale):
    wave = torch.randn(1, channels, samples) * scale
    try:
        out, _ = prepare_waveform(wave, rate)
    except AudioError:
        return
    assert out.ndim == 1 and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert out.numel() >= 16000 // 25 - 1


def test_minutes_of_mfcc_are_fast_and_sized_right():
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal(16000 * 180).astype(np.float32) * 0.1)
    feats = MfccFeatures()(wave)
    assert feats.num_frames == (1 + math.ceil((wave.numel() - 400) / 160)) // 4 == 4499
    assert feats.values.shape == (4 * 4499, 39)
