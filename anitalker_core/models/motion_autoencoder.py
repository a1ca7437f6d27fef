"""Stage 1 of AniTalker: the motion encoder and the warp decoder trained together as an autoencoder."""

from __future__ import annotations

import torch
from torch import nn

from ..device_policy import CHANNELS_LAST
from ..types import MOTION_DIM
from .motion_encoder import MotionEncoder
from .warp_decoder import WarpDecoder


class MotionAutoencoder(nn.Module):
    """Keys ``enc.*`` and ``dec.*`` match the released stage1.ckpt.

    How it runs is set when it is loaded (see ``device_policy``): ``compute_dtype`` is the render autocast
    precision, ``channels_last`` the NHWC layout on CUDA.
    """

    def __init__(self, size: int = 256, motion_dim: int = MOTION_DIM) -> None:
        super().__init__()
        self.size = size
        self.motion_dim = motion_dim
        self.enc = MotionEncoder(size, motion_dim)
        self.dec = WarpDecoder(size, motion_dim)
        self.compute_dtype = torch.float32
        self.channels_last = CHANNELS_LAST

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """images (B,3,256,256) in [-1,1] -> wa (B,512), alpha (B,20), feature maps (coarse to fine)."""
        return self.enc(images)

    @torch.no_grad()
    def render(self, wa: torch.Tensor, alpha: torch.Tensor, feats: list[torch.Tensor]) -> torch.Tensor:
        """(B,3,256,256) roughly in [-1,1] and unclamped, like the reference decoder."""
        return self.dec(wa, alpha, feats, channels_last=self.channels_last)
