"""Cheap stand-ins for the warp decoder and the motion encoder, for tests of what happens around them (streaming,
pasting, colour matching, trimming, saving, cancelling, restoring, the files a command writes) rather than of the
networks themselves, which tests/test_parity.py holds to the official implementation and the command's and the
chain's own tests run end to end.

The decoder's stand-in keeps what those tests rely on: every frame is a different picture driven by its motion
code, the same code gives the same picture bit for bit in any batch, and values run over the renderer's -1..1
range. The encoder's gives each picture its own codes from its colours. Everything around ``render`` and
``encode`` (batching, clamping, cropping, the output path) runs as it does with the networks; only their
arithmetic, most of the cost (a second a picture for the encoder on one core), is skipped.
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


def stand_in_encode() -> Callable[..., tuple]:
    """``encode(images)`` -> (wa (B,512), alpha (B,20), no feature maps): codes projected from each picture's colour
    statistics, so different pictures (or crops of a moving face) give different codes and the same picture the
    same. Only the stand-in decoder may draw from them: it reads no feature maps."""
    g = torch.Generator().manual_seed(0)
    to_wa, to_alpha = torch.randn(12, 512, generator=g), torch.randn(12, 20, generator=g) * 0.2

    def encode(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list]:
        x = images.float()
        half = x.shape[-1] // 2
        stats = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3)), x[..., :half, :].mean(dim=(2, 3)),
                           x[..., :, :half].mean(dim=(2, 3))], dim=1)
        return stats @ to_wa, stats @ to_alpha, []

    return encode


def _put_stand_ins(target, put) -> None:
    """Both stand-ins put on ``target``, a ``MotionAutoencoder`` or the class itself, with ``put`` (setattr)."""
    drawn, encoded = stand_in_render(), stand_in_encode()
    if isinstance(target, type):
        put(target, "render", lambda model, *args: drawn(*args))
        put(target, "encode", lambda model, images: encoded(images))
    else:
        put(target, "render", drawn)
        put(target, "encode", encoded)


def stand_in_networks(monkeypatch, target=None) -> None:
    """The stage-1 model's encoder and decoder replaced by the stand-ins for one test: on ``target`` (a
    ``MotionAutoencoder``), or on every one (the class) when none is given."""
    from anitalker_core.models.motion_autoencoder import MotionAutoencoder

    _put_stand_ins(MotionAutoencoder if target is None else target, monkeypatch.setattr)


def install_stand_ins() -> None:
    """In a process of its own (a batch worker process, a Ray actor): every stage-1 model there encodes and draws
    with the stand-ins for the rest of that process."""
    from anitalker_core.models.motion_autoencoder import MotionAutoencoder

    _put_stand_ins(MotionAutoencoder, setattr)


def start_worker_process_with_stand_ins(*args) -> None:
    """The batch command's process-pool initializer, after ``install_stand_ins`` in the new process."""
    from anitalker_core.app.workers import _start_worker_process

    install_stand_ins()
    _start_worker_process(*args)
