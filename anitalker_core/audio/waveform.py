"""Getting any speech recording into the 16 kHz mono float waveform the audio encoders expect."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Union

import torch

from ..errors import AudioError
from ..types import FPS, SAMPLE_RATE

MIN_RATE, MAX_RATE = 1000, 384000
MAX_PEAK = 1e6
"""A peak beyond this is no recording at any scale a decoder produces (raw 16-bit samples read as float peak at
32767 and still pass, with a note); values near float32's limit would overflow in the resampler."""
SINC_KERNEL_LIMIT = 10**6
"""Largest product of the reduced rates resampled with torchaudio's sinc kernel (every common rate is far
below: 44.1 to 16 kHz is 441 x 160)."""


def resample(waveform: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
    """Band-limited resampling of float audio along its last axis.

    torchaudio's sinc kernel holds one row per output phase across one input period, so its size is the product
    of the reduced rates: for an odd rate such as 99,991 Hz that is gigabytes, enough to kill the process. Such
    rates go through scipy's polyphase filter, whose memory grows with the larger reduced rate only.
    """
    from_rate, to_rate = int(from_rate), int(to_rate)
    if from_rate == to_rate:
        return waveform
    g = math.gcd(from_rate, to_rate)
    up, down = to_rate // g, from_rate // g
    if up * down <= SINC_KERNEL_LIMIT:
        import torchaudio.functional as AF

        return AF.resample(waveform, from_rate, to_rate)
    from scipy.signal import resample_poly

    out = resample_poly(waveform.detach().cpu().double().numpy(), up, down, axis=-1)
    return torch.from_numpy(out).to(waveform.dtype)


def prepare_waveform(waveform: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, str]:
    """[T], [C,T] or ComfyUI's [B,C,T] at any rate -> ([T] float32 at 16 kHz mono, note for the user)."""
    notes = []
    if not isinstance(waveform, torch.Tensor):
        raise AudioError(f"expected the audio as a tensor, got {type(waveform).__name__}; connect a Load Audio node")
    try:
        sample_rate = int(sample_rate)
    except (TypeError, ValueError, OverflowError) as exc:
        raise AudioError(f"the audio's sample rate {sample_rate!r} is not a number") from exc
    if not MIN_RATE <= sample_rate <= MAX_RATE:
        raise AudioError(f"the audio's sample rate {sample_rate} Hz is not plausible (expected {MIN_RATE}-{MAX_RATE} Hz); "
                         "the file is probably mislabeled: re-export it as WAV or MP3")
    if waveform.ndim == 3:
        if waveform.shape[0] > 1:
            notes.append(f"the audio input holds {waveform.shape[0]} clips; only the first is used")
        if waveform.shape[0] == 0:
            raise AudioError("the audio input is an empty batch (no clips); load a speech recording")
        waveform = waveform[0]
    if waveform.ndim == 1:
        waveform = waveform.unsqueeze(0)
    if waveform.ndim != 2:
        raise AudioError(f"expected audio shaped [samples], [channels, samples] or [batch, channels, samples], "
                         f"got {tuple(waveform.shape)}")
    channels, samples = waveform.shape
    if channels == 0 or samples == 0:
        raise AudioError("the audio is empty (0 samples); load a recording with speech in it")
    if waveform.dtype == torch.bool or waveform.is_complex():
        raise AudioError(f"the audio samples are {waveform.dtype}, expected real numbers (float or integer PCM)")
    if not waveform.is_floating_point():  # integer PCM -> [-1, 1)
        waveform = waveform.float() / (torch.iinfo(waveform.dtype).max + 1.0)
    waveform = waveform.detach().to("cpu", torch.float32)
    bad = int((~torch.isfinite(waveform)).sum())
    if bad:
        raise AudioError(f"the audio contains {bad} NaN or infinite samples; it is corrupt or came from a broken "
                         "node upstream: re-export or re-load it")
    loudest = float(waveform.abs().max())
    if loudest > MAX_PEAK:
        raise AudioError(f"the audio's samples reach {loudest:.3g}, far beyond full scale (1.0): it is not a "
                         "recording in -1..1 (raw integer samples stored as float?); re-export or re-load it")
    if channels > 1:
        notes.append(f"mixed {channels} channels down to mono")
        waveform = waveform.mean(0)
    else:
        waveform = waveform[0]
    duration = samples / sample_rate
    if duration < 1.0 / FPS:
        raise AudioError(f"the audio is {duration * 1000:.1f} ms long, shorter than one video frame (40 ms); "
                         "give at least a fraction of a second of speech")
    waveform = resample(waveform, sample_rate, SAMPLE_RATE)
    peak = float(waveform.abs().max())
    if peak == 0.0:
        notes.append("the audio is silent; the face will barely move")
    elif peak > 1.0:
        notes.append(f"the audio peaks at {peak:.2f} (above full scale); it is used as is")
    return waveform.contiguous(), "; ".join(notes)


def load_audio_file(path: Union[str, Path]) -> tuple[torch.Tensor, int]:
    """Decode any audio (or video with sound) by its content, not its extension -> ([C,T] float32, rate)."""
    import av
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file {path} does not exist")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(f"{path} has no audio stream; give a WAV, MP3, FLAC or a video with sound")
            stream = container.streams.audio[0]
            rate = stream.rate or stream.codec_context.sample_rate
            resampler = av.AudioResampler(format="fltp", layout=None, rate=None)
            chunks = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
    except av.error.FFmpegError as exc:
        raise AudioError(f"could not decode {path} as audio ({exc}); it may be damaged or not an audio file") from exc
    if not chunks:
        raise AudioError(f"{path} contains no audio samples")
    data = np.concatenate(chunks, axis=1).astype(np.float32)
    return torch.from_numpy(data), int(rate)
