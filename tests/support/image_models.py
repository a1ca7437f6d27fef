"""Random-weight upscale and face models, each file written the way its authors save theirs.

The networks are spandrel's own classes with their own initialisation (spandrel recognises a file by its keys).
The layouts are the authors': GFPGAN (GFPGANv1.4.pth), RestoreFormer (GFPGAN's release of it), CodeFormer and
Real-ESRGAN's RRDBNet (RealESRGAN_x4plus.pth, BasicSR's key names) under ``params_ema``; Real-ESRGAN's compact
networks (realesr-general-x4v3.pth) under ``params``; the original ESRGAN (RRDB_ESRGAN_x4.pth) bare, in its own key
names. ``prefix="module."`` is a copy saved from DataParallel. A ``.safetensors`` path is written flat, the only way
that format holds weights.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import torch

PARAMS_EMA = "params_ema"
"""BasicSR's key for the averaged weights it releases (GFPGAN, Real-ESRGAN, CodeFormer)."""
PARAMS = "params"


def save_weights(state: dict[str, torch.Tensor], path: Path, wrap: Optional[str] = None, prefix: str = "") -> Path:
    """``state`` saved as ``{wrap: state}`` (bare without ``wrap``; flat for .safetensors), every key after
    ``prefix``."""
    state = {prefix + k: v.detach().contiguous() for k, v in state.items()}
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({wrap: state} if wrap else state, path)
    return path


def _seeded(build):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build()


def write_upscaler(path: Path, wrap: Optional[str] = PARAMS, prefix: str = "") -> Path:
    """A tiny 2x Real-ESRGAN compact network (SRVGGNetCompact), under ``params`` as Real-ESRGAN releases them."""
    g = torch.Generator().manual_seed(0)
    feats, convs = 8, 2
    sd = {"body.0.weight": torch.randn(feats, 3, 3, 3, generator=g) * 0.1, "body.0.bias": torch.zeros(feats),
          "body.1.weight": torch.full((feats,), 0.25)}
    i = 2
    for _ in range(convs):
        sd[f"body.{i}.weight"] = torch.randn(feats, feats, 3, 3, generator=g) * 0.1
        sd[f"body.{i}.bias"] = torch.zeros(feats)
        sd[f"body.{i + 1}.weight"] = torch.full((feats,), 0.25)
        i += 2
    sd[f"body.{i}.weight"] = torch.randn(3 * 4, feats, 3, 3, generator=g) * 0.01
    sd[f"body.{i}.bias"] = torch.zeros(3 * 4)
    return save_weights(sd, path, wrap, prefix)


def esrgan_state(features: int = 64, blocks: int = 23, scale: int = 4) -> dict[str, torch.Tensor]:
    """An RRDBNet's weights in the original ESRGAN's key names (``model.0``, ``model.1.sub.N.RDBk...``)."""
    from spandrel.architectures.ESRGAN import ESRGAN

    return _seeded(lambda: ESRGAN(num_filters=features, num_blocks=blocks, scale=scale).state_dict())


def write_esrgan(path: Path, features: int = 8, blocks: int = 1, scale: int = 4) -> Path:
    """An ESRGAN saved bare, in its own key names, as RRDB_ESRGAN_x4.pth is."""
    return save_weights(esrgan_state(features, blocks, scale), path)


def basicsr_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An x4 RRDBNet's weights from the original ESRGAN's key names to BasicSR's, Real-ESRGAN's (``conv_first``,
    ``body.N.rdbk.convj``, ``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``)."""
    blocks = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"model\.1\.sub\.(\d+)\.RDB", k)))
    layers = {"model.0": "conv_first", f"model.1.sub.{blocks}": "conv_body", "model.3": "conv_up1",
              "model.6": "conv_up2", "model.8": "conv_hr", "model.10": "conv_last"}
    renamed = {}
    for key, value in state.items():
        block = re.fullmatch(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)", key)
        if block:
            renamed["body.{}.rdb{}.conv{}.{}".format(*block.groups())] = value
        else:
            layer, kind = key.rsplit(".", 1)
            renamed[f"{layers[layer]}.{kind}"] = value
    return renamed


def write_realesrgan_x4(path: Path, features: int = 8, blocks: int = 1) -> Path:
    """A Real-ESRGAN x4 RRDBNet in BasicSR's key names under ``params_ema``, as RealESRGAN_x4plus.pth is (whose
    size is ``features=64, blocks=23``)."""
    return save_weights(basicsr_names(esrgan_state(features, blocks, 4)), path, PARAMS_EMA)


def write_gfpgan(path: Path) -> Path:
    """A random-weight GFPGAN v1.4 under ``params_ema`` as GFPGANv1.4.pth. spandrel's class defaults are v1.4's
    configuration and it takes no other size: 86 M parameters, 350 MB."""
    from spandrel.architectures.GFPGAN import GFPGAN

    return save_weights(_seeded(GFPGAN).state_dict(), path, PARAMS_EMA)


def write_restoreformer(path: Path) -> Path:
    """A small random-weight RestoreFormer under ``params_ema`` (spandrel reads its widths from the weights): 32
    channels, the fewest its group norms take, and one block a level, so a 512x512 face costs well under a second
    on a CPU."""
    from spandrel.architectures.RestoreFormer import RestoreFormer

    model = _seeded(lambda: RestoreFormer(n_embed=64, embed_dim=16, ch=32, ch_mult=(1,) * 6, num_res_blocks=1,
                                          z_channels=32))
    return save_weights(model.state_dict(), path, PARAMS_EMA)


def write_codeformer(path: Path) -> Path:
    """A random-weight CodeFormer under ``params_ema`` as codeformer.pth (needs ``spandrel_extra_arches``). Its
    transformer is small (one layer of 64 wide, a 64-entry codebook); the VQGAN around it has a fixed size, 68 M
    parameters."""
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    model = _seeded(lambda: CodeFormer(dim_embd=64, n_head=8, n_layers=1, codebook_size=64, connect_list=["32"]))
    return save_weights(model.state_dict(), path, PARAMS_EMA)
