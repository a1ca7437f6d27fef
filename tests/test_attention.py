"""The conformers' relative-position attention over blocks of queries: the whole-sequence result, in memory that
grows with the length rather than its square."""

from __future__ import annotations

import math

import pytest
import torch

from anitalker_core import device_policy
from anitalker_core.models.conformer import Conformer, RelativeSelfAttention, query_rows, relative_positions
from anitalker_core.stages.measure import measure


@pytest.fixture(scope="module")
def attention():
    torch.manual_seed(0)
    module = RelativeSelfAttention(64, 2).eval()
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-0.3, 0.3)
    return module


def by_definition(att: RelativeSelfAttention, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Transformer-XL attention written out: query i and key j score (q_i + u).k_j + (q_i + v).p(i - j), where the
    table's slot t-1-d holds relative offset d; each row softmaxed over all keys. No shift trick, no blocks."""
    b, t, _ = x.shape
    heads = lambda y: y.view(y.shape[0], -1, att.heads, att.head_dim).transpose(1, 2)  # noqa: E731
    q, k, v, p = heads(att.linear_q(x)), heads(att.linear_k(x)), heads(att.linear_v(x)), heads(att.linear_pos(pos))
    i, j = torch.arange(t).view(-1, 1), torch.arange(t).view(1, -1)
    table = p[0][:, t - 1 - (i - j)]  # (heads, t, t, d): the relative position of each (query, key) pair
    content = (q + att.pos_bias_u.unsqueeze(1)) @ k.transpose(-2, -1)
    position = torch.einsum("bhid,hijd->bhij", q + att.pos_bias_v.unsqueeze(1), table)
    weights = torch.softmax((content + position) / math.sqrt(att.head_dim), dim=-1)
    return att.linear_out((weights @ v).transpose(1, 2).reshape(b, t, -1))


@pytest.mark.parametrize("length", [1, 2, 7, 50, 333])
def test_blocks_of_queries_give_the_whole_sequence_attention(attention, length):
    x = torch.randn(3, length, 64, generator=torch.Generator().manual_seed(length))
    pos = relative_positions(length, 64, x.device, x.dtype)
    with torch.no_grad():
        expected = by_definition(attention, x, pos)
        for rows in sorted({1, 3, 16, 100, length}):
            got = attention(x, pos, rows)
            assert got.shape == expected.shape
            assert float((got - expected).abs().max()) <= 1e-5, (length, rows)


def test_block_size_follows_the_budget():
    mb = 2**20
    assert query_rows(2, 1500, 4, 256 * mb) == 1500  # the scores fit: one block, the whole computation at once
    assert query_rows(2, 15000, 4, 256 * mb) == 556  # 27 even blocks of at most 256 MB of scores
    assert query_rows(2, 15000, 4, 1) == 1  # never less than one query
    assert 4 * 2 * 15000 * 4 * query_rows(2, 15000, 4, 256 * mb) <= 256 * mb
    assert device_policy.attention_budget(torch.device("cpu")) <= device_policy.ATTENTION_BYTES


def test_conformer_memory_grows_with_the_length_not_its_square(monkeypatch):
    """Peak tensor memory of a conformer at 1,000 and 4,000 frames with a 4 MB attention budget: four times the
    length costs less than four times the memory, where whole-sequence attention would cost sixteen times."""
    monkeypatch.setattr(device_policy, "ATTENTION_BYTES", 4 * 2**20)
    torch.manual_seed(0)
    conformer = Conformer(32, 1).eval()
    peaks = {}
    with torch.no_grad():
        for frames in (1000, 4000):
            x = torch.randn(1, frames, 32)
            peaks[frames] = measure(lambda: conformer(x), torch.device("cpu")).host_bytes
    whole = 4 * 2 * 4000 * 4000 * 4  # the score tables of all 4,000 queries at once: 512 MB
    assert peaks[4000] < 4 * peaks[1000] and peaks[4000] < whole / 20, peaks
