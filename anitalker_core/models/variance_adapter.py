"""The variance adapter: head location, face scale and head pose as explicit, controllable attributes.

Each attribute has a predictor (speech -> attribute, used when the user gives no control) and an encoder
(attribute -> a residual added to the speech features). They run in the order location -> scale -> pose,
each seeing the features already shifted by the previous one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn


class SequenceMLP(nn.Module):
    """Two-layer LSTM (hidden 128) and a linear read-out, over a (B, T, C) sequence."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden, num_layers=2, batch_first=True)
        self.fc = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.lstm(x)[0])


@dataclass
class Attributes:
    """Per-frame pose (B,T,3, degrees/90), location (B,T,1) and scale (B,T,1): given or predicted."""

    pose: Optional[torch.Tensor] = None
    location: Optional[torch.Tensor] = None
    scale: Optional[torch.Tensor] = None


ORDER = ("location", "scale", "pose")  # the order the training code applies them in
PREFIX = {"location": "location", "scale": "face_scale", "pose": "pose"}  # checkpoint key prefixes
WIDTH = {"location": 1, "scale": 1, "pose": 3}


def build_adapter(owner: nn.Module, attributes: tuple[str, ...], speech_dim: int) -> None:
    """Create ``<attr>_predictor`` / ``<attr>_encoder`` pairs directly on ``owner``, so checkpoint keys stay
    flat (``pose_predictor.lstm.*``) as in the released files."""
    for name in attributes:
        prefix, width = PREFIX[name], WIDTH[name]
        owner.add_module(f"{prefix}_predictor", SequenceMLP(speech_dim, width))
        owner.add_module(f"{prefix}_encoder", SequenceMLP(width, speech_dim))


def apply_adapter(owner: nn.Module, attributes: tuple[str, ...], x: torch.Tensor,
                  given: Optional[Attributes]) -> tuple[torch.Tensor, Attributes]:
    """Shift speech features x by each attribute in turn; returns the shifted features and the attributes used.

    An attribute that ``given`` holds is followed; one it lacks (or all, when ``given`` is None) is predicted."""
    used = Attributes()
    for name in ORDER:
        if name not in attributes:
            continue
        prefix = PREFIX[name]
        value = getattr(given, name) if given is not None else None
        if value is None:
            value = getattr(owner, f"{prefix}_predictor")(x)
        x = x + getattr(owner, f"{prefix}_encoder")(value.to(x.dtype))
        setattr(used, name, value)
    return x, used
