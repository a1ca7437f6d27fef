"""Makes the pictures of the node help pages (web/docs/img/), small enough to ship with the pack.

    python docs/pictures.py     # rewrites web/docs/img/paste_back.jpg and faces_numbered.jpg

- paste_back.jpg: Paste Back on the sample portrait set into a wider picture: the picture, the square paste without
  colour matching, the head mask with matched colours, and the matte. The released renderer cannot run here, so the
  "rendered" head is the portrait's own crop with a renderer-like colour cast and softness (bench/seam.py's
  stand-in): what makes a seam.
- faces_numbered.jpg: Load Portrait's preview of a picture with two faces (the conversation sample), each outlined
  and numbered as the face input counts them.

The motion plot (web/docs/img/motion_plot.png) comes from ``python -m bench.calm_silence --plot``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "web" / "docs" / "img"
PANEL = (240, 240)
SCENE = (720, 540)  # a picture larger than the head, as artists paste into


def picture(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy()).float().div(255)


def to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray((image.clamp(0, 1) * 255).round().byte().numpy())


def labelled(image: Image.Image, label: str) -> Image.Image:
    panel = image.resize(PANEL, Image.LANCZOS)
    draw = ImageDraw.Draw(panel)
    draw.rectangle((0, PANEL[1] - 18, PANEL[0], PANEL[1]), fill=(0, 0, 0))
    draw.text((6, PANEL[1] - 15), label, fill=(255, 255, 255))
    return panel


def scene() -> torch.Tensor:
    """The sample portrait (a tight head crop) inside a wider picture: its own colours, blurred, around it."""
    from PIL import ImageFilter

    portrait = Image.open(ROOT / "examples" / "monalisa.jpg").convert("RGB").resize((400, 400), Image.LANCZOS)
    backdrop = portrait.resize((6, 5), Image.BOX).resize(SCENE, Image.BICUBIC)
    fade = Image.new("L", (400, 400), 0)
    ImageDraw.Draw(fade).rectangle((40, 40, 359, 399), fill=255)
    backdrop.paste(portrait, ((SCENE[0] - 400) // 2, SCENE[1] - 400), fade.filter(ImageFilter.GaussianBlur(16)))
    return torch.from_numpy(np.asarray(backdrop).copy()).float().div(255)


def paste_back(out: Path) -> None:
    from anitalker_core.image.paste_back import Compositor, PasteOptions
    from anitalker_core.image.portrait_crop import crop_portrait
    from bench.seam import stand_in_render

    original = scene()
    crop, box, _ = crop_portrait(original)
    frame = stand_in_render(crop)
    pad = box.size // 6  # the square's edge and some picture around it
    region = (max(0, box.x0 - pad), max(0, box.y0 - pad), min(SCENE[0], box.x1 + pad), min(SCENE[1], box.y1 + pad))
    panels = [labelled(to_pil(original).crop(region), "the picture")]
    for mask, colour, label in (("box", False, "mask box, no colour match"),
                                ("head", True, "mask head + colour match")):
        comp = Compositor(original, box, PasteOptions(mask=mask, color_match=colour)).match_colors(frame[0])
        panels.append(labelled(to_pil(comp.paste(frame)[0]).crop(region), label))
        matte = comp.matte()
    panels.append(labelled(to_pil(matte[..., None].expand(-1, -1, 3)).crop(region), "matte (head)"))
    sheet = Image.new("RGB", (PANEL[0] * len(panels) + 8 * (len(panels) - 1), PANEL[1]), (32, 32, 32))
    for i, panel in enumerate(panels):
        sheet.paste(panel, (i * (PANEL[0] + 8), 0))
    sheet.save(out, quality=82, optimize=True)


def faces_numbered(out: Path) -> None:
    from anitalker_core.image.face_numbers import numbered_faces
    from anitalker_core.image.portrait_crop import crop_portrait

    image = picture(ROOT / "examples" / "two_faces.jpg")
    _, box, _ = crop_portrait(image, face=1)
    to_pil(numbered_faces(image, box, side=320)[0]).save(out, quality=82, optimize=True)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    paste_back(OUT / "paste_back.jpg")
    faces_numbered(OUT / "faces_numbered.jpg")
    for name in ("paste_back.jpg", "faces_numbered.jpg"):
        print(f"{name}: {(OUT / name).stat().st_size // 1000} kB")


if __name__ == "__main__":
    main()
