"""The warp-based decoder: (wa, motion code, portrait feature maps) -> a 256x256 frame.

Linear Motion Decomposition turns the 20 motion coefficients into a displacement of the 512-d latent along
an orthonormal basis (QR of the learned direction matrix). At every resolution a styled convolution stack
predicts a flow field and a mask that warp the portrait's own feature maps, so the identity comes from the
picture and only the motion comes from the latent.
"""

from __future__ import annotations

import contextlib
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..types import MOTION_DIM, STYLE_DIM
from .layers import ModulatedConv2d, StyledConv, Upsample, conv_layer
from .motion_encoder import CHANNELS


class Direction(nn.Module):
    """Learned motion directions; their orthonormal basis is cached per weight version, not per frame."""

    def __init__(self, motion_dim: int = MOTION_DIM) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(STYLE_DIM, motion_dim))
        self._basis: Optional[torch.Tensor] = None
        self._basis_key: Optional[tuple] = None
        self.register_load_state_dict_post_hook(lambda module, _: module.refresh())

    def refresh(self) -> None:
        """Forget the cached basis (called automatically after loading weights)."""
        self._basis = None

    def basis(self) -> torch.Tensor:
        w = self.weight
        try:
            version = w._version
        except RuntimeError:  # inference tensors carry no version counter; loads still refresh via the hook
            version = -1
        key = (w.data_ptr(), w.device, w.dtype, version)
        if self._basis is None or self._basis_key != key:
            q, _ = torch.linalg.qr((w.detach().float() + 1e-8).cpu())
            self._basis = q.to(w.device)
            self._basis_key = key
        return self._basis

    def forward(self, alpha: torch.Tensor) -> torch.Tensor:
        # a broadcast product summed over the motion axis: the reference's arithmetic, bit for bit
        return torch.sum(alpha.float()[:, :, None] * self.basis().t()[None], dim=1)


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))


class ToRGB(nn.Module):
    def __init__(self, in_ch: int, upsample: bool = True) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = conv_layer(in_ch, 3, 1)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = self.conv(x) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


_GRIDS: dict[tuple, torch.Tensor] = {}


def identity_grid(size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(1,size,size,2) sampling grid of the undeformed image in grid_sample's (x, y) order, from -1 to 1."""
    key = (size, str(device), dtype)
    if key not in _GRIDS:
        lin = torch.linspace(-1.0, 1.0, size, dtype=torch.float64)
        gy, gx = torch.meshgrid(lin, lin, indexing="ij")
        # made in float64 on the host and converted there: some devices (Apple's MPS) have no float64
        _GRIDS[key] = torch.stack((gx, gy), -1).unsqueeze(0).to(dtype).to(device)
    return _GRIDS[key]


class ToFlow(nn.Module):
    """Predicts a flow field (2 channels, tanh) and a blend mask (sigmoid) and warps the portrait features."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_ch, 3, 1, STYLE_DIM, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, feat: torch.Tensor,
                skip: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        grid = torch.tanh(out[:, 0:2]).permute(0, 2, 3, 1) + identity_grid(x.shape[2], x.device, out.dtype)
        mask = torch.sigmoid(out[:, 2:3])
        if feat.shape[0] != x.shape[0]:
            feat = feat.expand(x.shape[0], -1, -1, -1)
        warped = F.grid_sample(feat.to(grid.dtype), grid, mode="bilinear", padding_mode="zeros",
                               align_corners=False).mul_(mask)
        return warped, torch.addcmul(warped, x, 1.0 - mask), out


class WarpDecoder(nn.Module):
    """Checkpoint prefix ``dec.``."""

    def __init__(self, size: int = 256, motion_dim: int = MOTION_DIM) -> None:
        super().__init__()
        self.direction = Direction(motion_dim)
        self.input = ConstantInput(CHANNELS[4])
        self.conv1 = StyledConv(CHANNELS[4], CHANNELS[4], STYLE_DIM)
        self.to_rgb1 = ToRGB(CHANNELS[4], upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.to_flows = nn.ModuleList()
        in_ch = CHANNELS[4]
        for level in range(3, int(math.log2(size)) + 1):
            out_ch = CHANNELS[2 ** level]
            self.convs.append(StyledConv(in_ch, out_ch, STYLE_DIM, upsample=True))
            self.convs.append(StyledConv(out_ch, out_ch, STYLE_DIM))
            self.to_rgbs.append(ToRGB(out_ch))
            self.to_flows.append(ToFlow(out_ch))
            in_ch = out_ch

    def latent(self, wa: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """wa + sum_i alpha_i * q_i: the portrait's appearance moved along the motion basis."""
        return wa.float() + self.direction(alpha)

    def forward(self, wa: torch.Tensor, alpha: torch.Tensor, feats: list[torch.Tensor],
                channels_last: bool = False) -> torch.Tensor:
        """Under fp16/bf16 autocast only the styled convolutions (nearly all the FLOPs) run in low precision;
        flows, masks, warps and the RGB path stay in fp32, where rounding would move pixels. ``channels_last``:
        NHWC activations on CUDA (see ``device_policy.CHANNELS_LAST``)."""
        style = self.latent(wa, alpha)
        x = self.input.input.expand(style.shape[0], -1, -1, -1)
        if x.is_cuda and x.shape[0] > 1 and channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # tensor-core friendly layout
        low = torch.is_autocast_enabled(x.device.type)
        x = self.conv1(x, style)
        rgb = flow = None
        for i, feat in enumerate(feats):
            x = self.convs[2 * i](x, style)
            x = self.convs[2 * i + 1](x, style)
            with torch.autocast(x.device.type, enabled=False) if low else contextlib.nullcontext():
                warped, x, flow = self.to_flows[i](x.float(), style, feat, flow)
                rgb = self.to_rgbs[i](warped, rgb)
        return rgb
