"""Speech features as a stage: the recording through HuBERT or MFCC, timed on two short pieces first."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Optional, Union

import torch

from ..audio.features import HUBERT_DIM, HUBERT_HZ, HUBERT_LAYERS, MFCC_DIM, ROWS_PER_FRAME, HubertFeatures, \
    MfccFeatures
from ..audio.waveform import prepare_waveform
from ..types import FPS, SAMPLE_RATE, AudioFeatures, ProgressCallback
from .estimate import SHORTER, Need, Part, Step
from .measure import Measured, measure

SPEECH_PIECES_S = (0.5, 2.0)
"""Seconds of speech the encoder is timed on: two lengths give its cost per pass and per second."""

SpeechEncoder = Union[HubertFeatures, MfccFeatures]


def features_bytes(kind: str, frames: int) -> int:
    """Size of the speech features of ``frames`` video frames (HuBERT: 25 states x 1024 wide, 50 Hz)."""
    rows = ROWS_PER_FRAME[kind] * frames
    return rows * (HUBERT_LAYERS * HUBERT_DIM if kind == "hubert" else MFCC_DIM) * 4


class SpeechFeatures:
    """Any recording at any rate and channel count -> the features the motion generator was trained on."""

    def __init__(self, encoder: SpeechEncoder, waveform: torch.Tensor, sample_rate: int) -> None:
        self.encoder = encoder
        self.wave16k, self.note = prepare_waveform(waveform, sample_rate)  # bad audio fails here, before any work
        self.device = torch.device(getattr(encoder, "device", "cpu"))

    @property
    def num_frames(self) -> int:
        """Video frames of the clip (to within one: the encoders' own count is exact)."""
        return max(1, self.wave16k.numel() * FPS // SAMPLE_RATE)

    def estimate(self) -> Step:
        """The encoder timed on two short pieces (cost per pass + per second) after a first call, over the passes
        the whole clip takes; memory: the features plus one pass's working set (linear in length)."""
        encoder, wave = self.encoder, self.wave16k
        samples = wave.numel()
        lengths = sorted({min(samples, int(s * SAMPLE_RATE)) for s in SPEECH_PIECES_S})
        measure(lambda: encoder(wave[:lengths[0]]), self.device, memory=False)  # one-off set-up
        runs = [(n / SAMPLE_RATE, measure(lambda n=n: encoder(wave[:n]), self.device)) for n in lengths]
        (s1, m1), (s2, m2) = runs[0], runs[-1]
        slope = (m2.seconds - m1.seconds) / (s2 - s1) if s2 > s1 else 0.0
        if slope <= 0:  # one piece (a short clip) or a noisy machine: proportional to the length
            slope, fixed = m2.seconds / s2, 0.0
        else:
            fixed = max(m1.seconds - slope * s1, 0.0)
        spans = encoder.spans(samples) if hasattr(encoder, "spans") else None  # HuBERT's windows; MFCC: one pass
        passes = [(rb - ra) / HUBERT_HZ for _, _, ra, rb in spans] if spans else [samples / SAMPLE_RATE]
        seconds = sum(fixed + slope * p for p in passes) if s2 < samples / SAMPLE_RATE else m2.seconds

        def at(memory: Callable[[Measured], int], length_s: float) -> int:
            """Working memory of a pass of ``length_s`` seconds, linear through the two pieces."""
            if s2 <= s1:
                return int(memory(m2) * length_s / s2)
            return int(max(memory(m1) + (memory(m2) - memory(m1)) / (s2 - s1) * (length_s - s1), 0))

        kind, frames = encoder.kind, self.num_frames
        kept = features_bytes(kind, frames)
        longest = max(passes)
        # a pass holds its own features and the layers' outputs; at the end the features are copied once
        host_work = max(at(lambda m: m.host_bytes, longest) - features_bytes(kind, int(longest * FPS)), kept)
        label = "HuBERT" if kind == "hubert" else "MFCC"
        needs = {"host": (Need(f"{label} features of {frames} frames", kept, SHORTER),
                          Need(f"{label} working memory ({longest:.0f} s pass)", host_work, SHORTER))}
        if self.device.type == "cuda":
            needs["device"] = (Need(f"{label} on the GPU ({longest:.0f} s pass)",
                                    at(lambda m: m.device_bytes, longest), SHORTER),)
        rate = f"{seconds / max(samples / SAMPLE_RATE, 1e-9):.2f} s per second of speech"
        return Step((Part("features", seconds, rate),), keeps=(needs["host"][0],), **needs)

    def run(self, callback: Optional[ProgressCallback] = None) -> AudioFeatures:
        features = self.encoder(self.wave16k, callback=callback)
        note = "\n".join(n for n in (self.note, features.note) if n)
        return replace(features, note=note)
