"""Speech features as a stage: the recording through HuBERT or MFCC, timed on two short pieces first."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional, Union

import torch

from ..audio.features import HUBERT_DIM, HUBERT_HZ, HUBERT_LAYERS, MFCC_DIM, ROWS_PER_FRAME, HubertFeatures, \
    MfccFeatures, hubert_frames
from ..audio.waveform import prepare_waveform
from ..types import FPS, SAMPLE_RATE, AudioFeatures, ProgressCallback
from .estimate import SHORTER, Need, Part, Step
from .measure import Measured, measure

SPEECH_PIECES_S = (0.5, 2.0)
"""Seconds of speech the encoder is timed on: two lengths give its cost per pass and per second."""

PROBE_FRAMES = 1500
"""HuBERT frames (30 s) at which one transformer layer is timed and measured for a longer clip (see ``layer_costs``)."""

SpeechEncoder = Union[HubertFeatures, MfccFeatures]


@dataclass(frozen=True)
class LayerCosts:
    """What HuBERT's two short pieces cannot show of a pass over a whole clip, from one transformer layer timed and
    measured at the pieces' sizes and at the clip's (up to ``PROBE_FRAMES``), for all layers; zeros for MFCC."""

    attention_s: float = 0.0
    """Self-attention over the whole clip: its time grows with the square of the length."""
    per_frame_s: float = 0.0
    """The rest of the layers, per frame at the clip's size ..."""
    pieces_per_frame_s: float = 0.0
    """... and per frame between the two pieces' sizes, which their slope holds: small matrices run slower."""
    host_per_frame: float = 0.0
    """Bytes one layer holds per frame while it runs, with the hidden state it came with (in a short piece they
    hide under the pass's fixed costs); on the GPU too:"""
    device_per_frame: float = 0.0


def _seconds(call: Callable[[], object], device: torch.device, repeats: int) -> float:
    """The fastest of ``repeats`` runs, after one that pays any set-up: what the call costs, with the least of
    the noise that other work on the machine adds."""
    measure(call, device, memory=False)
    return min(measure(call, device, memory=False).seconds for _ in range(repeats))


def layer_costs(encoder: SpeechEncoder, frames: int, piece_frames: tuple[int, int],
                device: torch.device) -> LayerCosts:
    """``LayerCosts`` of a pass over ``frames`` 50 Hz frames, whose estimate timed pieces of ``piece_frames``."""
    if not isinstance(encoder, HubertFeatures) or frames <= piece_frames[1]:
        return LayerCosts()
    layers = encoder.layers - 1
    n = min(frames, PROBE_FRAMES)
    run_layer, attend = encoder.layer_probe(n)
    attention = _seconds(attend, device, 1)
    layer = _seconds(run_layer, device, 1)
    small = [_seconds(encoder.layer_probe(f)[0], device, 2) for f in piece_frames]
    held = measure(run_layer, device)
    state = encoder.values_per_row // encoder.layers * 4  # the hidden state itself, one frame
    return LayerCosts(attention_s=layers * attention * (frames / n) ** 2,
                      per_frame_s=layers * max(layer - attention, 0.0) / n,
                      pieces_per_frame_s=layers * max(small[1] - small[0], 0.0) / (piece_frames[1] - piece_frames[0]),
                      host_per_frame=held.host_bytes / n + state,
                      device_per_frame=(held.device_bytes / n + state) if device.type == "cuda" else 0.0)


def features_bytes(kind: str, frames: int, values_per_row: Optional[int] = None) -> int:
    """Size of the speech features of ``frames`` video frames (HuBERT: 25 states x 1024 wide at 50 Hz, unless the
    encoder says otherwise)."""
    rows = ROWS_PER_FRAME[kind] * frames
    if values_per_row is None:
        values_per_row = HUBERT_LAYERS * HUBERT_DIM if kind == "hubert" else MFCC_DIM
    return rows * values_per_row * 4


class SpeechFeatures:
    """Any recording at any rate and channel count -> the features the motion generator was trained on."""

    def __init__(self, encoder: SpeechEncoder, waveform: torch.Tensor, sample_rate: int) -> None:
        self.encoder = encoder
        self.wave16k, self.note = prepare_waveform(waveform, sample_rate)  # bad audio fails here, before any work
        self.device = torch.device(getattr(encoder, "device", "cpu"))

    @property
    def num_frames(self) -> int:
        """Video frames of the clip, by the encoder's own count."""
        return max(1, self.encoder.video_frames(self.wave16k.numel()))

    def estimate(self) -> Step:
        """The encoder timed on two short pieces (cost per call and per second) after a first call, with what only a
        long clip shows of HuBERT (``layer_costs``: its self-attention, its layers' speed at the clip's size, one
        layer's memory at the clip's length); memory: the features plus the working memory of the one pass."""
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
        duration = samples / SAMPLE_RATE
        layer_frames = hubert_frames(samples)
        costs = layer_costs(encoder, layer_frames, (hubert_frames(lengths[0]), hubert_frames(lengths[-1])),
                            self.device)
        seconds = m2.seconds
        if s2 < duration:
            # the pieces' slope, with the layers at the clip's size in place of the layers at the pieces' sizes
            per_frame = max(slope / HUBERT_HZ - costs.pieces_per_frame_s, 0.0) + costs.per_frame_s
            seconds = fixed + per_frame * duration * HUBERT_HZ + costs.attention_s

        def at(memory: Callable[[Measured], int], length_s: float) -> int:
            """Peak memory of a pass of ``length_s`` seconds, linear through the two pieces."""
            if s2 <= s1:
                return int(memory(m2) * length_s / s2)
            return int(max(memory(m1) + (memory(m2) - memory(m1)) / (s2 - s1) * (length_s - s1), 0))

        kind, frames, row = encoder.kind, self.num_frames, encoder.values_per_row
        kept = features_bytes(kind, frames, row)

        def work(memory: Callable[[Measured], int], per_frame: float) -> int:
            """Beyond the features a pass fills as it goes: what the pieces show, or the fixed part of the first
            piece and one layer at the clip's length, whichever is more."""
            pieces = at(memory, duration) - features_bytes(kind, int(duration * FPS), row)
            fixed = memory(m1) - features_bytes(kind, int(s1 * FPS), row)
            return int(max(pieces, fixed + per_frame * layer_frames, 0))

        host_work = work(lambda m: m.host_bytes, costs.host_per_frame)
        label = "HuBERT" if kind == "hubert" else "MFCC"
        needs = {"host": (Need(f"{label} features of {frames} frames", kept, SHORTER),
                          Need(f"{label} working memory", host_work, SHORTER))}
        if self.device.type == "cuda":
            needs["device"] = (Need(f"{label} on the GPU", work(lambda m: m.device_bytes, costs.device_per_frame),
                                    SHORTER),)
        rate = f"{seconds / max(duration, 1e-9):.2f} s per second of speech"
        return Step((Part("features", seconds, rate),), keeps=(needs["host"][0],), **needs)

    def run(self, callback: Optional[ProgressCallback] = None) -> AudioFeatures:
        features = self.encoder(self.wave16k, callback=callback)
        note = "\n".join(n for n in (self.note, features.note) if n)
        return replace(features, note=note)
