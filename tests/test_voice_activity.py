"""Voice activity on the motion's frames: aligned with the features, adaptive, blind to short consonant gaps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.speech_motion import PAUSE_AT_S, PAUSE_S, RATE, read_speech, speech_with_pause

from anitalker_core.audio.features import MfccFeatures, hubert_frames
from anitalker_core.audio.voice_activity import MIN_PAUSE_S, detect_voice_activity
from anitalker_core.errors import AudioError

FRAME = RATE // 25  # 640 samples per motion frame


def bursts(frames: list[int], total: int, seed: int = 0) -> torch.Tensor:
    """Digital silence with a 1 kHz tone (-10 dB) exactly filling motion frames ``frames``."""
    wave = np.zeros(total * FRAME, dtype=np.float32)
    t = np.arange(FRAME) / RATE
    for f in frames:
        wave[f * FRAME:(f + 1) * FRAME] = 0.45 * np.sin(2 * np.pi * 1000 * t + seed)
    return torch.from_numpy(wave)


def test_frame_i_is_motion_frame_i_for_both_feature_front_ends():
    loud = [3, 4, 9, 17, 18, 19, 30]
    wave = bursts(loud, 36)
    mfcc_frames = MfccFeatures()(wave).num_frames
    hubert_motion_frames = (hubert_frames(wave.numel()) + 1) // 2  # what HubertFeatures yields for 36 frames
    assert hubert_motion_frames == 36 and mfcc_frames in (35, 36)
    for frames in (mfcc_frames, hubert_motion_frames):
        va = detect_voice_activity(wave, RATE, frames, min_pause_s=0, hangover_s=0)
        assert torch.equal(torch.nonzero(va.speech).flatten(), torch.tensor([f for f in loud if f < frames]))
        assert va.num_frames == frames and va.fps == 25


def test_inserted_pause_in_real_speech_is_found_at_its_place():
    wave = speech_with_pause()
    va = detect_voice_activity(wave, RATE)
    assert va.num_frames == wave.numel() // FRAME
    inserted = [p for p in va.pauses if p.start_s < PAUSE_AT_S + PAUSE_S and p.end_s > PAUSE_AT_S]
    assert len(inserted) == 1
    p = inserted[0]
    # the speech ends and starts again within the hangover (0.08 s) and one frame of the inserted edges
    assert PAUSE_AT_S <= p.start_s <= PAUSE_AT_S + 0.08 + 0.04 + 1e-9
    assert PAUSE_AT_S + PAUSE_S - 0.08 - 0.04 - 1e-9 <= p.end_s <= PAUSE_AT_S + PAUSE_S
    assert f"{p.start_s:.2f}-{p.end_s:.2f} s" in va.describe()
    assert va.threshold_db < float(va.loudness_db.quantile(0.95)) - 12


def test_short_gaps_between_words_are_not_pauses():
    wave = torch.from_numpy(read_speech())
    raw = detect_voice_activity(wave, RATE, min_pause_s=0, hangover_s=0)
    short = [p for p in raw.pauses if p.end_s - p.start_s < 0.2 and 0 < p.start < raw.num_frames - p.frames]
    assert len(short) >= 3  # stop closures and breaths: quiet for a frame or a few
    va = detect_voice_activity(wave, RATE)
    assert va.pauses and all(p.end_s - p.start_s >= MIN_PAUSE_S - 1e-9 for p in va.pauses)
    assert not bool((raw.speech & ~va.speech).any())  # the hangover only ever adds speech


def test_threshold_follows_the_noise_floor_of_a_noisy_recording():
    wave = speech_with_pause()
    noisy = wave + torch.from_numpy(np.random.default_rng(1).normal(0, 0.006, wave.numel()).astype(np.float32))
    clean_va, noisy_va = detect_voice_activity(wave, RATE), detect_voice_activity(noisy, RATE)
    assert noisy_va.threshold_db > clean_va.threshold_db + 5  # -44 dB noise lifts the threshold above it
    assert any(p.start_s < PAUSE_AT_S + 0.3 and p.end_s > PAUSE_AT_S + PAUSE_S - 0.3 for p in noisy_va.pauses)


def test_any_rate_and_channel_layout_gives_the_same_pauses():
    wave = speech_with_pause()
    stereo = torchaudio.functional.resample(wave, RATE, 44100).repeat(2, 1)[None]  # ComfyUI's [B, C, T]
    frames = wave.numel() // FRAME
    a = detect_voice_activity(wave, RATE, frames)
    b = detect_voice_activity(stereo, 44100, frames)
    assert [(p.start, p.end) for p in a.pauses] == [(p.start, p.end) for p in b.pauses]
    assert "mixed 2 channels down to mono" in b.note


def test_silence_and_steady_sound_edge_cases():
    silent = detect_voice_activity(torch.zeros(RATE), RATE)
    assert [(p.start, p.end) for p in silent.pauses] == [(0, 25)] and "nearly silent" in silent.note
    tone = torch.sin(torch.arange(2 * RATE) / RATE * 2 * np.pi * 200) * 0.3
    steady = detect_voice_activity(tone, RATE)
    assert steady.pauses == () and steady.describe() == "no pauses found"
    longer = detect_voice_activity(bursts([0, 1, 2], 3), RATE, num_frames=40)  # frames past the audio are silent
    assert longer.speech[:3].all() and [(p.start, p.end) for p in longer.pauses] == [(3 + 2, 40)]


@pytest.mark.parametrize("kwargs, message", [
    ({"min_pause_s": -1}, "the minimum pause must be between 0 and 60"),
    ({"hangover_s": float("nan")}, "the hangover must be between 0 and 5"),
    ({"num_frames": 0}, "positive whole number"),
    ({"fps": 0}, "frame rate must be positive"),
])
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(AudioError, match=message):
        detect_voice_activity(torch.zeros(RATE), RATE, **kwargs)


@settings(max_examples=30, deadline=None)
@given(pattern=st.lists(st.booleans(), min_size=5, max_size=60), min_pause=st.sampled_from([0.0, 0.12, 0.3]),
       hangover=st.sampled_from([0.0, 0.04, 0.08]))
def test_pauses_are_exactly_the_long_quiet_runs(pattern, min_pause, hangover):
    loud = [i for i, on in enumerate(pattern) if on]
    va = detect_voice_activity(bursts(loud, len(pattern)), RATE, len(pattern), min_pause_s=min_pause,
                               hangover_s=hangover)
    speech = va.speech.numpy()
    assert speech[loud].all()  # a loud frame is always speech
    covered = np.zeros(len(pattern), dtype=bool)
    for p in va.pauses:
        assert not speech[p.start:p.end].any() and p.frames >= max(1, round(min_pause * 25))
        assert (p.start == 0 or speech[p.start - 1]) and (p.end == len(pattern) or speech[p.end])
        covered[p.start:p.end] = True
    assert np.array_equal(covered, ~speech)
