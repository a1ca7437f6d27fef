"""Conformer encoder (relative-position self-attention, macaron feed-forward, convolution module, post-norm).

Parameter names follow the ESPnet 2023 Conformer that AniTalker's stage-2 checkpoints were trained with, so
its blocks load unchanged; the implementation is our own and inference-only (no dropout, no masks).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..device_policy import attention_budget

LAYER_NORM_EPS = 1e-12  # what the checkpoints were trained with
SCORE_COPIES = 4
"""(query, key) score tables one attention block holds at its peak: the scores, the relative-position band (at
most two tables wide), the softmax."""


def query_rows(batch_heads: int, length: int, element_bytes: int, budget: int) -> int:
    """Queries per attention block so that the block's score tables take at most ``budget`` bytes (at least one
    row; all of them when the whole sequence fits)."""
    per_row = SCORE_COPIES * batch_heads * length * element_bytes
    blocks = -(-length // max(1, min(length, budget // max(per_row, 1))))
    return -(-length // blocks)  # blocks of even size


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
    """Multi-head self-attention with Transformer-XL style relative position terms (biases u and v).

    Queries are taken ``rows`` at a time: a block of queries needs its scores against every key and only the band
    of relative positions its rows can see, so memory grows with the length times the block, not the length
    squared, and every block computes what the whole sequence at once would (each row's softmax is its own).
    """

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
    def shift(band: torch.Tensor, length: int) -> torch.Tensor:
        """Scores of a block of n queries against the n + length - 1 relative-position slots they see, (B, H, n,
        n + length - 1), where query i of the block meets key j in column n - 1 - i + j, as scores per (query,
        key): (B, H, n, length). The diagonal read is a strided view, so it copies nothing."""
        b, h, n, width = band.shape
        band = band.contiguous()
        s0, s1, _, _ = band.stride()
        return band.as_strided((b, h, n, length), (s0, s1, width - 1, 1), band.storage_offset() + n - 1)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, rows: Optional[int] = None) -> torch.Tensor:
        """``pos``: the relative-position sinusoids of ``relative_positions(t)``; ``rows``: queries per block
        (all of them when None)."""
        b, t, _ = x.shape
        split = lambda y: y.view(y.shape[0], -1, self.heads, self.head_dim).transpose(1, 2)  # noqa: E731
        q = split(self.linear_q(x))  # (b, h, t, d)
        k = split(self.linear_k(x))
        v = split(self.linear_v(x))
        p = split(self.linear_pos(pos))  # (1, h, 2t-1, d): slot s holds relative offset t-1-s
        q_u = q + self.pos_bias_u.unsqueeze(1)
        q_v = q + self.pos_bias_v.unsqueeze(1)
        scale = math.sqrt(self.head_dim)
        rows = t if rows is None else max(1, min(int(rows), t))
        out = []
        for a in range(0, t, rows):
            e = min(a + rows, t)
            scores = torch.matmul(q_u[:, :, a:e], k.transpose(-2, -1))
            # query i sees offsets i .. i-(t-1), i.e. slots t-1-i .. 2t-2-i: for the block, slots t-e .. 2t-2-a
            band = torch.matmul(q_v[:, :, a:e], p[:, :, t - e: 2 * t - 1 - a].transpose(-2, -1))
            scores = scores.add_(self.shift(band, t)).div_(scale)
            del band
            out.append(torch.matmul(torch.softmax(scores, dim=-1), v))
            del scores
        joined = out[0] if len(out) == 1 else torch.cat(out, dim=2)
        return self.linear_out(joined.transpose(1, 2).reshape(b, t, -1))


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

    def forward(self, x: torch.Tensor, pos: torch.Tensor, rows: Optional[int] = None) -> torch.Tensor:
        x = self.norm_ff_macaron(x + 0.5 * self.feed_forward_macaron(x))
        x = self.norm_mha(x + self.self_attn(x, pos, rows))
        x = self.norm_conv(x + self.conv_module(x))
        x = self.norm_ff(x + 0.5 * self.feed_forward(x))
        return self.norm_final(x)


class Conformer(nn.Module):
    """(B, T, dim) -> (B, T, dim). Inputs are scaled by sqrt(dim) before the first block, as in training.

    Self-attention runs over the whole sequence in blocks of queries (see ``RelativeSelfAttention``), as many per
    block as ``device_policy.attention_budget`` allows, or ``query_rows`` when set; the result does not depend on
    the block size beyond float rounding.
    """

    def __init__(self, dim: int, blocks: int, heads: int = 2, kernel: int = 13) -> None:
        super().__init__()
        self.dim = dim
        self.heads = heads
        self.encoders = nn.ModuleList([ConformerBlock(dim, heads, kernel) for _ in range(blocks)])
        self.query_rows: Optional[int] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        rows = self.query_rows or query_rows(b * self.heads, t, x.element_size(), attention_budget(x.device))
        pos = relative_positions(t, self.dim, x.device, x.dtype)
        x = x * math.sqrt(self.dim)
        for block in self.encoders:
            x = block(x, pos, rows)
        return x
