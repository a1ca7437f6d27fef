"""The five released stage-2 motion generators: one frozen record each, the one place their facts live.

The generator's layers, the checkpoint loader, the weight files, the official seed noise and the command's
choices all read these records instead of spelling the variants out again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..errors import CheckpointError
from ..types import AudioKind

POSE, LOCATION, SCALE = "pose", "location", "scale"


@dataclass(frozen=True)
class Variant:
    """One released stage-2 model."""

    name: str
    audio: AudioKind
    """The speech features it was trained on."""
    attributes: tuple[str, ...]
    """Variance-adapter attributes it predicts and can be given, in the order training applies them."""
    file_name: str
    """The released checkpoint's file name."""
    download_mb: int
    """Its size on the hub, so a user can judge a download before starting it."""
    official_rng_draws: int
    """Uniform draws the official demo's global RNG consumes while building this model (seed compatibility)."""
    note: str
    """What it is good for, in a sentence for people."""

    @property
    def control(self) -> str:
        """"audio_only", "pose_only" or "full_control": which controls it takes."""
        return {(): "audio_only", (POSE,): "pose_only"}.get(self.attributes, "full_control")

    @property
    def has_control(self) -> bool:
        return bool(self.attributes)


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("hubert_audio_only", "hubert", (), "stage2_audio_only_hubert.ckpt", 342, 45_815_956,
            "lips and head from speech alone; the best lip sync"),
    Variant("hubert_pose_only", "hubert", (POSE,), "stage2_pose_only_hubert.ckpt", 348, 46_543_383,
            "speech plus head pose control"),
    Variant("hubert_full_control", "hubert", (LOCATION, SCALE, POSE), "stage2_full_control_hubert.ckpt", 359,
            47_995_673, "speech plus head pose, face location and face scale control"),
    Variant("mfcc_pose_only", "mfcc", (POSE,), "stage2_pose_only_mfcc.ckpt", 237, 32_755_735,
            "MFCC speech features (no HuBERT download) plus head pose control"),
    Variant("mfcc_full_control", "mfcc", (LOCATION, SCALE, POSE), "stage2_full_control_mfcc.ckpt", 249, 34_208_025,
            "MFCC speech features plus head pose, face location and face scale control"),
)}

STAGE2_VARIANTS: tuple[str, ...] = tuple(VARIANTS)
DEFAULT_VARIANT = "hubert_audio_only"
"""The authors' recommendation: the best lip sync, and nothing to tune."""


def get_variant(name: str) -> Variant:
    """The record of a variant name, or a CheckpointError that lists the valid names."""
    try:
        return VARIANTS[name]
    except (KeyError, TypeError):
        raise CheckpointError(f"unknown stage-2 variant {name!r}; expected one of {', '.join(STAGE2_VARIANTS)}") \
            from None


def find_variant(audio: str, attributes: set[str]) -> Optional[Variant]:
    """The released variant with this audio kind and these attributes (any order), if AniTalker released one."""
    for v in VARIANTS.values():
        if v.audio == audio and set(v.attributes) == set(attributes):
            return v
    return None
