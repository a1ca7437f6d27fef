"""How visible is the paste-back seam? Square feathered paste versus head mask and colour match.

    python -m bench.seam            # the five sample portraits; writes bench/results/seam-*.json

The real renderer cannot run here with the released weights, so each portrait's "rendering" is its own 256x256
crop degraded the way a reconstruction typically differs from its input: a colour cast (gains 1.06, 0.97,
0.92), a slightly lifted black level (+0.02) and a soft blur (Gaussian, sigma 0.8 px at 256 px). That is what a
seam is made of: the pasted square no longer matches the picture around it.

Two figures per paste, both 0 for a paste that adds no seam:
- colour step: the jump in colour the eye sees along the seam. The paste's error against the original picture is
  averaged (signed, per channel) over each of 16 angular segments of the zone just inside the mask's transition
  (weight >= 0.95, as wide as the transition); the figure is the mean over segments of the largest channel's
  absolute average, in 0..255 levels. Outside the mask the error is 0 by construction, so this is the step.
- extra gradient: the mean luminance gradient (0..255 per pixel) inside the transition zone (weight 0.05..0.95)
  minus the mean over equally wide zones just inside and outside it, minus the same on the untouched original.
  A feathered transition spreads any step over its whole width, so this stays near 0 for every variant.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

from anitalker_core.image.paste_back import Compositor, PasteOptions
from anitalker_core.image.portrait_crop import crop_portrait

CAST, LIFT, BLUR_SIGMA = (1.06, 0.97, 0.92), 0.02, 0.8
CONFIGS = {"box, no colour match (before)": ("box", False), "box + colour match": ("box", True),
           "head mask, no colour match": ("head", False), "head mask + colour match (default)": ("head", True)}


def stand_in_render(crop: torch.Tensor) -> torch.Tensor:
    """(1,3,256,256) in [-1,1] -> (1,3,256,256) in 0..1 with a renderer-like colour cast and softness."""
    x = (crop + 1) / 2
    k = torch.arange(-3, 4, dtype=torch.float32)
    k = torch.exp(-k * k / (2 * BLUR_SIGMA ** 2))
    k = (k / k.sum()).view(1, 1, 1, -1)
    x = F.conv2d(F.pad(x, (3, 3, 0, 0), mode="replicate"), k.expand(3, 1, 1, -1), groups=3)
    x = F.conv2d(F.pad(x, (0, 0, 3, 3), mode="replicate"), k.transpose(-1, -2).expand(3, 1, -1, 1), groups=3)
    return (x * torch.tensor(CAST).view(1, 3, 1, 1) + LIFT).clamp(0, 1)


def gradient(image: torch.Tensor) -> torch.Tensor:
    """(H,W,3) 0..1 -> (H,W) luminance gradient magnitude in 0..255 units per pixel."""
    lum = (image * torch.tensor([0.299, 0.587, 0.114])).sum(-1) * 255
    gx = torch.zeros_like(lum)
    gy = torch.zeros_like(lum)
    gx[:, 1:-1] = (lum[:, 2:] - lum[:, :-2]) / 2
    gy[1:-1] = (lum[2:] - lum[:-2]) / 2
    return torch.sqrt(gx * gx + gy * gy)


def zones(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The transition zone of a mask and equally wide neighbour zones inside and outside it."""
    transition = (weight > 0.05) & (weight < 0.95)
    width = max(2, int(round(float(transition.sum()) / max(1.0, float(_outline(transition).sum())))))
    near = F.max_pool2d(transition[None, None].float(), 2 * width + 1, stride=1, padding=width)[0, 0] > 0
    return transition, near & (weight >= 0.95), near & (weight <= 0.05)


def _outline(mask: torch.Tensor) -> torch.Tensor:
    grown = F.max_pool2d(mask[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
    return grown & ~mask


def extra_gradient(image: torch.Tensor, weight: torch.Tensor) -> float:
    g = gradient(image)
    t, inner, outer = zones(weight)
    return float(g[t].mean() - (g[inner].mean() + g[outer].mean()) / 2)


SEGMENTS = 16


def colour_step(pasted: torch.Tensor, original: torch.Tensor, weight: torch.Tensor) -> float:
    _, inner, _ = zones(weight)
    ys, xs = torch.nonzero(inner, as_tuple=True)
    cy, cx = ys.float().mean(), xs.float().mean()
    sector = ((torch.atan2(ys.float() - cy, xs.float() - cx) + torch.pi) / (2 * torch.pi) * SEGMENTS).long()
    error = (pasted - original)[ys, xs] * 255
    steps = [error[sector.clamp(max=SEGMENTS - 1) == k].mean(0).abs().max() for k in range(SEGMENTS)
             if bool((sector == k).any())]
    return float(torch.stack(steps).mean())


def full_weight(comp: Compositor) -> torch.Tensor:
    w = torch.zeros(comp.height, comp.width)
    w[comp.ya:comp.yb, comp.xa:comp.xb] = comp.mask[0, 0].cpu()
    return w


def main() -> None:
    from bench import record
    from tests.support.golden import MEDIA

    names = ["aiface2.png", "aiface7.png", "cartoon_girl.png", "monalisa.jpg", "statue.jpg"]
    rows = {}
    for name in names:
        picture = torch.from_numpy(np.asarray(Image.open(MEDIA / name)).copy()).float().div(255)
        crop, box, _ = crop_portrait(picture)
        frame = stand_in_render(crop)
        rows[name] = {}
        for label, (mask, colour) in CONFIGS.items():
            comp = Compositor(picture, box, PasteOptions(mask=mask, color_match=colour)).match_colors(frame[0])
            pasted = comp.paste(frame)[0]
            weight = full_weight(comp)
            rows[name][label] = {
                "colour_step": round(colour_step(pasted, comp.picture, weight), 2),
                "extra_gradient": round(extra_gradient(pasted, weight) - extra_gradient(comp.picture, weight), 2)}
    means = {label: {k: round(sum(r[label][k] for r in rows.values()) / len(rows), 2)
                     for k in ("colour_step", "extra_gradient")} for label in CONFIGS}
    for key in ("colour_step", "extra_gradient"):
        print(f"{key}: " + "  ".join(names))
        for label in CONFIGS:
            print(f"  {label:38s} " + "  ".join(f"{rows[n][label][key]:6.2f}" for n in names)
                  + f"   mean {means[label][key]:.2f}")
    record.save("seam", {"stand_in": {"cast": CAST, "lift": LIFT, "blur_sigma": BLUR_SIGMA},
                         "units": "colour_step: 0..255 levels; extra_gradient: 0..255 luminance per pixel",
                         "per_portrait": rows, "mean": means})


if __name__ == "__main__":
    main()
