"""Audio input handling: files by content, any rate and channel count, and every bad waveform."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from tests.support.golden import GOLDEN, MEDIA, io, write_hubert_folder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.says import says

from anitalker_core.audio import features
from anitalker_core.audio.features import HubertFeatures, MfccFeatures, check_hubert_config, hubert_frames
from anitalker_core.audio.waveform import load_audio_file, prepare_waveform
from anitalker_core.errors import AudioError, CheckpointError, MissingWeightsError

TINY_HUBERT = GOLDEN / "tiny-hubert"


@pytest.fixture(scope="module")
def hubert_io():
    return io("hubert")


@pytest.fixture(scope="module")
def tiny_hubert():
    return HubertFeatures(TINY_HUBERT, expected_shape=None)


def test_hubert_matches_the_official_transformers_4_features(hubert_io, tiny_hubert):
    feats = tiny_hubert(hubert_io["speech16k"])
    expected = hubert_io["hidden_states"]  # (layers+1, 2F, hidden), last frame edge-padded once
    assert feats.kind == "hubert" and feats.values.shape == expected.shape
    assert feats.num_frames == expected.shape[1] // 2 == 50
    assert feats.duration_s == pytest.approx(2.0)
    # includes the final layer norm on the last state, which transformers 5's hidden_states[-1] lacks
    assert (feats.values - expected).abs().max() <= 1e-4


def test_hubert_frame_count_follows_the_official_padding(tiny_hubert):
    # 0.5 s -> 24 frames at 50 Hz, one edge-padded -> 25 -> F = 12, values cut to 24 frames
    from transformers import HubertModel, Wav2Vec2FeatureExtractor

    wave = torch.randn(8000, generator=torch.Generator().manual_seed(1)) * 0.1
    assert hubert_frames(8000) == 24
    feats = tiny_hubert(wave)
    assert feats.num_frames == 12 and feats.values.shape == (4, 24, 32)
    # the model run directly: its 24 frames, in place (the edge-padded 25th is what the official count drops)
    values = Wav2Vec2FeatureExtractor.from_pretrained(TINY_HUBERT)(wave.numpy(), sampling_rate=16000,
                                                                  return_tensors="pt").input_values
    with torch.no_grad():
        out = HubertModel.from_pretrained(TINY_HUBERT).eval()(values, output_hidden_states=True)
    direct = torch.stack(list(out.hidden_states[:-1]) + [out.last_hidden_state])[:, 0]
    assert direct.shape == (4, 24, 32)
    assert (feats.values - direct).abs().max() <= 1e-5


def direct_hidden_states(wave: torch.Tensor) -> torch.Tensor:
    """The tiny model run by transformers itself in one call, as the official code runs it (no pieces)."""
    from transformers import HubertModel, Wav2Vec2FeatureExtractor

    values = Wav2Vec2FeatureExtractor.from_pretrained(TINY_HUBERT)(wave.numpy(), sampling_rate=16000,
                                                                  return_tensors="pt").input_values
    with torch.no_grad():
        out = HubertModel.from_pretrained(TINY_HUBERT).eval()(values, output_hidden_states=True)
    return torch.stack(list(out.hidden_states[:-1]) + [out.last_hidden_state])[:, 0]


def test_any_length_is_one_pass_whose_pieces_give_the_whole_clip_values(hubert_io, monkeypatch):
    """The front end runs over pieces of time (here 7 frames of 99), each layer over blocks of 9 frames against
    the keys and values of the whole clip: the values are those of one plain pass, and progress comes per layer."""
    monkeypatch.setattr(features, "FRONT_END_FRAMES", 7)
    monkeypatch.setattr(features, "LAYER_FRAMES", 9)
    pieces = HubertFeatures(TINY_HUBERT, expected_shape=None)
    assert pieces.model.feature_extractor.frames == 7
    assert pieces.model.encoder.layers[0].frames == 9 and pieces.model.encoder.layers[0].pre_norm
    calls = []
    wave = hubert_io["speech16k"]
    feats = pieces(wave, callback=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 4) for i in range(1, 5)] and feats.note == ""
    direct = direct_hidden_states(wave)
    assert direct.shape[1] == 99 and feats.values.shape == (4, 100, 32)  # the 100th: the official edge padding
    assert (feats.values[:, :99] - direct).abs().max() <= 1e-5
    assert torch.equal(feats.values[:, 99], feats.values[:, 98])


def test_post_norm_hubert_layers_in_blocks_give_the_one_pass_values(tmp_path, monkeypatch):
    """HuBERT's other layer form (layer norms after the residuals, a group-norm front end), in blocks of 9 of 99
    frames: the values of transformers' own pass."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    config = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          conv_dim=(32,) * 7, do_stable_layer_norm=False, feat_extract_norm="group")
    model = HubertModel(config).eval()
    model.save_pretrained(tmp_path)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(tmp_path)
    monkeypatch.setattr(features, "LAYER_FRAMES", 9)
    blocks = HubertFeatures(tmp_path, expected_shape=None)
    assert not blocks.pre_norm and blocks.model.encoder.layers[1].frames == 9
    wave = torch.randn(32000, generator=torch.Generator().manual_seed(2)) * 0.1
    values = Wav2Vec2FeatureExtractor.from_pretrained(tmp_path)(wave.numpy(), sampling_rate=16000,
                                                                return_tensors="pt").input_values
    with torch.no_grad():
        direct = torch.stack(model(values, output_hidden_states=True).hidden_states)[:, 0]
    assert direct.shape == (3, 99, 32)
    assert (blocks(wave).values[:, :99] - direct).abs().max() <= 1e-5


def test_missing_hubert_weights_name_the_folder_files_and_source(tmp_path):
    with pytest.raises(MissingWeightsError) as info:
        HubertFeatures(tmp_path / "chinese-hubert-large")
    msg = str(info.value)
    for part in ("chinese-hubert-large", "config.json", "pytorch_model.bin", "model.safetensors",
                 "TencentGameMate/chinese-hubert-large"):
        assert part in msg
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(TINY_HUBERT / "config.json", partial)
    with pytest.raises(MissingWeightsError, match="partial"):
        HubertFeatures(partial)


@pytest.mark.parametrize("layers, width, kind, found", [
    (12, 768, "hubert", "a hubert model with 12 layers of width 768 (a base model such as chinese-hubert-base"),
    (3, 32, "hubert", ("hubert", "3 layers", "width 32")),
    (24, 1024, "wav2vec2", ("wav2vec2", "24 layers", "width 1024")),
])
def test_a_speech_model_of_another_size_or_kind_is_refused_at_load(tmp_path, layers, width, kind, found):
    folder = write_hubert_folder(tmp_path / "speech", layers=layers, width=width, model_type=kind)
    with pytest.raises(CheckpointError) as info:
        HubertFeatures(folder)
    says(str(info.value), *found, str(folder), "chinese-hubert-large", "24 layers of width 1024",
         "TencentGameMate/chinese-hubert-large", "mfcc_*")


def test_chinese_hubert_large_shape_passes_the_check_and_a_broken_config_does_not(tmp_path):
    check_hubert_config(write_hubert_folder(tmp_path / "large", layers=24, width=1024))  # no exception
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is not a readable HuBERT config"):
        check_hubert_config(broken)
    # the parity fixtures' tiny model only loads when a test asks for no shape check explicitly
    with pytest.raises(CheckpointError, match="3 layers of width 32"):
        HubertFeatures(TINY_HUBERT)


def test_hubert_without_preprocessor_config_normalizes_like_chinese_hubert(tmp_path, hubert_io):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(TINY_HUBERT / name, bare)
    feats = HubertFeatures(bare, expected_shape=None)(hubert_io["speech16k"])
    assert (feats.values - hubert_io["hidden_states"]).abs().max() <= 1e-4


def test_mfcc_matches_the_official_features():
    s2 = io("stage2")
    feats = MfccFeatures()(s2["speech16k"])
    rows = feats.values.shape[0]
    assert feats.kind == "mfcc" and rows == 4 * (s2["mfcc"].shape[0] // 4) == 4 * feats.num_frames
    assert (feats.values - s2["mfcc"][:rows]).abs().max() <= 1e-3


@pytest.mark.parametrize("samples", [721, 16000 + 77])
def test_mfcc_equals_python_speech_features(samples):
    import python_speech_features as psf
    rng = np.random.default_rng(samples)
    sig = (rng.standard_normal(samples) * 0.2).astype(np.float32)
    sig[: samples // 4] *= 1e-4  # a quiet stretch: the log of tiny band energies is where precision shows
    ceps = psf.mfcc(sig.astype(np.float64), 16000, winlen=0.025, winstep=0.01, numcep=13, nfilt=26, nfft=512,
                    preemph=0.97, ceplifter=22, appendEnergy=True)
    expected = np.hstack([ceps, psf.base.delta(ceps, 1), psf.base.delta(ceps, 2)])
    feats = MfccFeatures()(torch.from_numpy(sig))
    rows = feats.values.shape[0]
    assert rows == 4 * (expected.shape[0] // 4) and rows >= 4
    assert np.abs(feats.values.numpy() - expected[:rows]).max() <= 1e-4


def test_wav_file_loads_as_channels_by_samples():
    wave, rate = load_audio_file(MEDIA / "statue.wav")
    assert wave.dtype == torch.float32 and wave.ndim == 2 and rate > 0 and wave.shape[1] > rate
    assert torch.isfinite(wave).all() and 0 < float(wave.abs().max()) <= 1.0


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
    (torch.zeros(1, 16000), 400000, "not plausible"),
    (torch.zeros(1, 16000), 0, "not plausible"),
    (torch.zeros(1, 16000, dtype=torch.bool), 16000, "expected real numbers"),
    (torch.zeros(2, 2, 2, 2), 16000, "expected audio shaped"),
    ("not a tensor", 16000, "connect a Load Audio node"),
])
def test_bad_waveforms_raise_clear_errors(wave, rate, message):
    with pytest.raises(AudioError, match=message):
        prepare_waveform(wave, rate)


def test_mfcc_refuses_audio_too_short_for_one_frame():
    with pytest.raises(AudioError, match="at least 46 ms"):
        MfccFeatures()(torch.zeros(720))


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


@pytest.mark.parametrize("rate", [44100, 99991, 383999])
def test_odd_sample_rates_resample_in_bounded_memory_and_keep_the_pitch(rate):
    """An odd rate (99,991 Hz does not reduce against 16 kHz) needs a sinc kernel of gigabytes, enough to take
    the whole process down; it goes through a polyphase filter instead (about 350 MB at the largest rate
    accepted), and a tone stays at its pitch."""
    from tests.support import peak_memory

    seconds, tone_hz = 0.5, 440.0
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    wave = (0.5 * torch.sin(2 * math.pi * tone_hz * t)).float()
    peak_memory.reset_peak()
    before = peak_memory.peak_rss()
    out, _ = prepare_waveform(wave[None], rate)
    assert peak_memory.peak_rss() - before < 512 * 2**20
    assert out.shape == (int(seconds * 16000),)
    expected = 0.5 * torch.sin(2 * math.pi * tone_hz * torch.arange(out.numel(), dtype=torch.float64) / 16000)
    assert float((out[400:-400] - expected[400:-400]).abs().max()) < 2e-3  # away from the edges' filter ramps


def test_minutes_of_mfcc_are_fast_and_sized_right():
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal(16000 * 180).astype(np.float32) * 0.1)
    feats = MfccFeatures()(wave)
    assert feats.num_frames == (1 + math.ceil((wave.numel() - 400) / 160)) // 4 == 4499
    assert feats.values.shape == (4 * 4499, 39)


def test_samples_far_beyond_full_scale_are_refused_not_turned_into_infinities():
    """Found by the property test: 3 channels at 7.5e37 overflowed to inf while resampling to 16 kHz."""
    with pytest.raises(AudioError) as info:
        prepare_waveform(torch.full((3, 320), 7.5e37), 8000)
    says(str(info.value), "7.5e+37", "full scale", "re-export")
    loud, note = prepare_waveform(torch.full((1, 8000), 32767.0), 16000)  # raw 16-bit samples read as float
    assert torch.isfinite(loud).all() and "32767" in note
