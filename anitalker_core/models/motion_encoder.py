"""The motion encoder: an image -> appearance code ``wa`` (512), motion code ``alpha`` (20), feature maps.

The image encoder is a residual CNN whose pooled activations at every level are mixed by the Hierarchical
Aggregation Layer (a softmax-weighted sum), so ``wa`` sees both fine texture and global layout. The
identity-excluded MLP then strips identity before a projector reduces it to the 20 motion coefficients.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..types import MOTION_DIM, STYLE_DIM
from .layers import EqualConv2d, EqualLinear, conv_layer

# channels of the feature map at each resolution (as in StyleGAN2 with channel multiplier 1)
CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = conv_layer(in_ch, in_ch, 3)
        self.conv2 = conv_layer(in_ch, out_ch, 3, downsample=True)
        self.skip = conv_layer(in_ch, out_ch, 1, downsample=True, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class LevelWeights(nn.Module):
    """Softmax weights over the 8 pooled levels of the Hierarchical Aggregation Layer."""

    def __init__(self, levels: int = 8) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(levels))

    def forward(self, pooled: list[torch.Tensor]) -> torch.Tensor:
        w = torch.softmax(self.weights, dim=0)
        return sum(p * w[i] for i, p in enumerate(pooled))


class ImageEncoder(nn.Module):
    """256x256 image -> (wa, feature maps at 8..256 px), with the Hierarchical Aggregation Layer."""

    def __init__(self, size: int = 256) -> None:
        super().__init__()
        self.convs = nn.ModuleList([conv_layer(3, CHANNELS[size], 1)])
        res = size
        while res > 4:
            self.convs.append(ResBlock(CHANNELS[res], CHANNELS[res // 2]))
            res //= 2
        self.convs.append(EqualConv2d(CHANNELS[4], STYLE_DIM, 4, bias=False))
        # the three finest levels have fewer channels: project them to 512 before mixing
        self.fc1 = EqualLinear(CHANNELS[256], STYLE_DIM)
        self.fc2 = EqualLinear(CHANNELS[128], STYLE_DIM)
        self.fc3 = EqualLinear(CHANNELS[64], STYLE_DIM)
        self.ws = LevelWeights(len(self.convs))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        projections = {0: self.fc1, 1: self.fc2, 2: self.fc3}
        maps, pooled = [], []
        h = x
        for i, conv in enumerate(self.convs):
            h = conv(h)
            p = F.adaptive_avg_pool2d(h, 1).flatten(1)
            pooled.append(projections[i](p) if i in projections else p)
            maps.append(h)
        # the decoder warps the maps from 8x8 up to 256x256 (coarse to fine)
        feats = maps[::-1][2:]
        return self.ws(pooled), feats


def mlp(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))


class IdentityDecoupling(nn.Module):
    """Identity / identity-excluded MLPs; only the identity-excluded branch is used at inference."""

    def __init__(self, dim: int = STYLE_DIM) -> None:
        super().__init__()
        self.identity_net = mlp(dim)
        self.identity_net_density = mlp(dim)
        self.identity_excluded_net = mlp(dim)


class MotionEncoder(nn.Module):
    """Checkpoint prefix ``enc.``: image encoder + identity decoupling + motion projector."""

    def __init__(self, size: int = 256, motion_dim: int = MOTION_DIM) -> None:
        super().__init__()
        self.net_app = ImageEncoder(size)
        self.net_decouping = IdentityDecoupling()
        self.fc = nn.Sequential(*[EqualLinear(STYLE_DIM, STYLE_DIM) for _ in range(4)],
                                EqualLinear(STYLE_DIM, motion_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        wa, feats = self.net_app(x)
        alpha = self.fc(self.net_decouping.identity_excluded_net(wa))
        return wa, alpha, feats
