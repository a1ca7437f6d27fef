"""Face detection, training-style cropping and paste-back on the real sample portraits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from anitalker_core.errors import PortraitError
from anitalker_core.face_detection import detect_faces
from anitalker_core.portrait_crop import crop_portrait, paste_back
from golden import MEDIA

PORTRAITS = ["aiface2.png", "aiface7.png", "cartoon_girl.png", "monalisa.jpg", "statue.jpg"]


def load(name):
    return torch.from_numpy(np.asarray(Image.open(MEDIA / name)).copy()).float().div(255)


@pytest.mark.parametrize("name", PORTRAITS)
def test_every_sample_face_is_found_and_cropped_around_it(name):
    image = load(name)
    h, w = image.shape[:2]
    rgb = (image[..., :3] * 255).round().to(torch.uint8).numpy()
    face = detect_faces(rgb)[0]
    crop, box, _ = crop_portrait(image)
    assert crop.shape == (1, 3, 256, 256) and -1 <= float(crop.min()) and float(crop.max()) <= 1
    # the detected face lies inside the crop box
    assert box.x0 <= face.x and face.x + face.size <= box.x1
    assert box.y0 <= face.y and face.y + face.size <= box.y1
    # the crop lies in the image, or overhangs only a little (that part is padded)
    assert box.x0 > -0.1 * box.size and box.y0 > -0.1 * box.size
    assert box.x1 < w + 0.1 * box.size and box.y1 < h + 0.1 * box.size
    # calibration: the samples are already cropped the way the model likes, so auto-crop ~ the whole image
    inter = max(0, min(box.x1, w) - max(box.x0, 0)) * max(0, min(box.y1, h) - max(box.y0, 0))
    assert inter / (w * h + box.size ** 2 - inter) > 0.7


def test_full_mode_reproduces_the_official_preprocessing():
    image = load("monalisa.jpg")
    crop, box, _ = crop_portrait(image, mode="full")
    pil = Image.open(MEDIA / "monalisa.jpg").convert("RGB").resize((256, 256))
    expected = (torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).float() / 255 - 0.5) * 2
    assert torch.equal(crop[0], expected)
    assert (box.x0, box.y0, box.size) == (0, 0, 512)


def test_no_face_suggests_full_or_manual_mode():
    with pytest.raises(PortraitError, match=r"no face.*'full'.*'manual'"):
        crop_portrait(torch.full((300, 300, 3), 0.5))


def test_alpha_grayscale_tiny_and_manual_boxes():
    rgba = load("aiface7.png")
    assert rgba.shape[-1] == 4
    _, _, note = crop_portrait(rgba)
    assert "transparent" in note
    gray = load("statue.jpg")[..., :1]
    crop, _, _ = crop_portrait(gray, mode="full")
    assert torch.equal(crop[0, 0], crop[0, 1])
    tiny, _, note = crop_portrait(torch.rand(32, 32, 3), mode="full")
    assert tiny.shape == (1, 3, 256, 256) and "32x32" in note
    crop, box, _ = crop_portrait(load("statue.jpg"), mode="manual", box=(-50, -50, 300))
    assert box.x0 == -50 and crop.shape == (1, 3, 256, 256)
    with pytest.raises(PortraitError, match="outside"):
        crop_portrait(load("statue.jpg"), mode="manual", box=(600, 0, 100))
    with pytest.raises(PortraitError, match="crop mode"):
        crop_portrait(load("statue.jpg"), mode="zoom")
    with pytest.raises(PortraitError, match="NaN"):
        crop_portrait(torch.full((64, 64, 3), float("nan")), mode="full")


def test_paste_back_leaves_everything_outside_the_face_untouched():
    image = load("monalisa.jpg")
    _, box, _ = crop_portrait(image)
    frames = torch.rand(3, 256, 256, 3)
    out = paste_back(image, frames, box, feather=0.1)
    assert out.shape == (3, 512, 512, 3)
    inside = torch.zeros(512, 512, dtype=torch.bool)
    inside[max(box.y0, 0):box.y1, max(box.x0, 0):box.x1] = True
    assert torch.equal(out[:, ~inside], image[None, ~inside].expand(3, -1, -1))
    cy, cx = (box.y0 + box.y1) // 2, (box.x0 + box.x1) // 2
    assert not torch.equal(out[0, cy, cx], image[cy, cx])  # the centre is the rendered face
    with pytest.raises(PortraitError, match="same image"):
        paste_back(image[:100], frames, box)


def test_4k_portrait_is_detected_cropped_and_pasted_back():
    big = torch.from_numpy(np.asarray(Image.open(MEDIA / "statue.jpg").resize((3840, 3840))).copy()).float() / 255
    crop, box, _ = crop_portrait(big)
    assert crop.shape == (1, 3, 256, 256) and box.size > 1500
    out = paste_back(big, torch.rand(2, 256, 256, 3), box)
    assert out.shape == (2, 3840, 3840, 3)
