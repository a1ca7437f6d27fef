"""A cheap stand-in for the warp decoder, for tests of what happens around the render (streaming, pasting, colour
matching, trimming, saving, cancelling, restoring) rather than of the render itself, which tests/test_parity.py
holds to the official implementation and the command's and the chain's tests run end to end.

The stand-in keeps what those tests rely on: every frame is a different picture driven by its motion code, the
same code gives the same picture bit for bit in any batch, and values run over the renderer's -1..1 range. The
portrait is still encoded by the real encoder, and everything around ``render`` (batching, clamping, the output
path) runs as it does with the network; only the decoder's arithmetic, most of a frame's cost, is skipped.
"""

from __future__ import annotations

from typing import Callable

import torch


def stand_in_render(size: int = 256) -> Callable[..., torch.Tensor]:
    """``render(wa, alpha, feats)`` -> (B,3,size,size): stripes whose phase follows the first three motion numbers."""
    side = torch.linspace(-1, 1, size)
    y, x = torch.meshgrid(side, side, indexing="ij")

    def render(wa: torch.Tensor, alpha: torch.Tensor, feats) -> torch.Tensor:
        return torch.sin(5 * x + 3 * y + 4 * alpha[:, :3, None, None].float())

    return render


def patterned(renderer: torch.nn.Module) -> torch.nn.Module:
    """``renderer`` (a ``MotionAutoencoder``) drawing its frames with the stand-in from now on."""
    renderer.render = stand_in_render(renderer.size)
    return renderer
