"""Conformer encoder (relative-position self-attention, macaron feed-forward, convolution module, post-norm).

Parameter names follow the ESPnet 2023 Conformer that AniTalker's stage-2 checkpoints were trained with, so
its blocks load unchanged; the implementation is our own and inference-only (no dropout, no masks).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LAYER_NORM_EPS = 1e-12  # what the checkpoints were trained with


def relative_positions(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Sinusoids for relative distances length-1 ... -(length-1): shape (1, 2*length-1, dim)."""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
    ahead = torch.zeros(length, dim)
    behind = torch.zeros(length, dim)
    ahead[:, 0::2] = torch.sin(pos * freq)
    ahead[:, 1::2] = torch.cos(pos * freq)
    behind[:, 0::2] = torch.sin(-pos * freq)
    behind[:, 1::2] = torch.cos(-pos * freq)
    table = torch.cat([torch.flip(ahead, [0]), behind[1:]], dim=0)
    return table.unsqueeze(0).to(device=device, dtype=dtype)


class RelativeSelfAttention(nn.Module):
    """Multi-head self-attention with Transformer-XL style relative position terms (biases u and v)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.linear_q = nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim)
        self.linear_v = nn.Linear(dim, dim)
        self.linear_out = nn.Linear(dim, dim)
        self.linear_pos = nn.Linear(dim, dim, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(heads, self.head_dim))
        self.pos_bias_v = nn.Parameter(torch.zeros(heads, self.head_dim))

    @staticmethod
    def shift(scores: torch.Tensor) -> torch.Tensor:
        """Turn scores against absolute relative-offset slots into scores per (query, key) pair."""
        b, h, t, p = scores.shape
        padded = torch.cat([scores.new_zeros(b, h, t, 1), scores], dim=-1).view(b, h, p + 1, t)
        return padded[:, :, 1:].reshape(b, h, t, p)[:, :, :, : p // 2 + 1]

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        split = lambda y: y.view(y.shape[0], -1, self.heads, self.head_dim)  # noqa: E731
        q = split(self.linear_q(x))  # (b, t, h, d)
        k = split(self.linear_k(x)).transpose(1, 2)
        v = split(self.linear_v(x)).transpose(1, 2)
        p = split(self.linear_pos(pos)).transpose(1, 2)
        content = torch.matmul((q + self.pos_bias_u).transpose(1, 2), k.transpose(-2, -1))
        position = self.shift(torch.matmul((q + self.pos_bias_v).transpose(1, 2), p.transpose(-2, -1)))
        attn = torch.softmax((content + position) / math.sqrt(self.head_dim), dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, t, -1)
        return self.linear_out(out)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w_1 = nn.Linear(dim, hidden)
        self.w_2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(F.silu(self.w_1(x)))


class ConvolutionModule(nn.Module):
    """Pointwise conv + GLU, depthwise temporal conv, BatchNorm, swish, pointwise conv."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.pointwise_conv1 = nn.Conv1d(dim, 2 * dim, 1)
        self.depthwise_conv = nn.Conv1d(dim, dim, kernel, padding=(kernel - 1) // 2, groups=dim)
        self.norm = nn.BatchNorm1d(dim)
        self.pointwise_conv2 = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.glu(self.pointwise_conv1(x.transpose(1, 2)), dim=1)
        y = F.silu(self.norm(self.depthwise_conv(y)))
        return self.pointwise_conv2(y).transpose(1, 2)


class ConformerBlock(nn.Module):
    """Half FF, self-attention, convolution, half FF; each residual followed by its LayerNorm (post-norm)."""

    def __init__(self, dim: int, heads: int, kernel: int) -> None:
        super().__init__()
        self.self_attn = RelativeSelfAttention(dim, heads)
        self.feed_forward = FeedForward(dim, dim)
        self.feed_forward_macaron = FeedForward(dim, dim)
        self.conv_module = ConvolutionModule(dim, kernel)
        for name in ("norm_ff", "norm_mha", "norm_ff_macaron", "norm_conv", "norm_final"):
            setattr(self, name, nn.LayerNorm(dim, eps=LAYER_NORM_EPS))

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = self.norm_ff_macaron(x + 0.5 * self.feed_forward_macaron(x))
        x = self.norm_mha(x + self.self_attn(x, pos))
        x = self.norm_conv(x + self.conv_module(x))
        x = self.norm_ff(x + 0.5 * self.feed_forward(x))
        return self.norm_final(x)


class Conformer(nn.Module):
    """(B, T, dim) -> (B, T, dim). Inputs are scaled by sqrt(dim) before the first block, as in training."""

    def __init__(self, dim: int, blocks: int, heads: int = 2, kernel: int = 13) -> None:
        super().__init__()
        self.dim = dim
        self.encoders = nn.ModuleList([ConformerBlock(dim, heads, kernel) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pos = relative_positions(x.shape[1], self.dim, x.device, x.dtype)
        x = x * math.sqrt(self.dim)
        for block in self.encoders:
            x = block(x, pos)
        return x
