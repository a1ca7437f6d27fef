"""Paste back into the full-size picture: the square and head masks, colour matching, crop modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.support.golden import MEDIA
from PIL import Image

from anitalker_core.errors import PortraitError
from anitalker_core.image.paste_back import ColorMatch, Compositor, PasteOptions, feather_mask, head_mask, paste_back
from anitalker_core.image.portrait_crop import crop_portrait
from anitalker_core.types import CropBox


def load(name: str) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(MEDIA / name)).copy()).float().div(255)


def perfect_render(image: torch.Tensor) -> tuple[torch.Tensor, CropBox]:
    """The crop the model sees, (1,256,256,3) in 0..1: what a flawless renderer would give back."""
    crop, box, _ = crop_portrait(image)
    return ((crop + 1) / 2).permute(0, 2, 3, 1), box


def inside(box: CropBox, h: int, w: int) -> torch.Tensor:
    m = torch.zeros(h, w, dtype=torch.bool)
    m[max(box.y0, 0):box.y1, max(box.x0, 0):box.x1] = True
    return m


def test_box_mask_changes_only_the_crop_region_and_feathers_its_edge():
    image = load("monalisa.jpg")
    _, box, _ = crop_portrait(image)
    frames = torch.rand(3, 256, 256, 3)
    out = paste_back(image, frames, box, PasteOptions(feather=0.1, mask="box", color_match=False), chunk=2)
    assert out.shape == (3, 512, 512, 3) and out.dtype == torch.float32
    keep = ~inside(box, 512, 512)
    assert torch.equal(out[:, keep], image[None, keep].expand(3, -1, -1))
    flat = torch.rand(1, 3) * torch.ones(3, 256, 256, 3)
    out = paste_back(image, flat, box, PasteOptions(mask="box", color_match=False))
    cy, cx = (box.y0 + box.y1) // 2, (box.x0 + box.x1) // 2
    assert torch.allclose(out[:, cy - 20:cy + 20, cx - 20:cx + 20], flat[:, :1, :1], atol=1e-5)
    y = max(box.y0, 0) + 1
    w_edge = float(feather_mask(box.size, 0.1)[y - box.y0, cx - box.x0])
    assert 0 < w_edge < 1
    expected = image[y, cx] * (1 - w_edge) + flat[0, 0, 0] * w_edge
    assert torch.allclose(out[0, y, cx], expected, atol=1e-5)
    with pytest.raises(PortraitError, match="same image"):
        paste_back(image[:100], frames, box)
    with pytest.raises(PortraitError, match="frames"):
        paste_back(image, frames[0], box)
    with pytest.raises(PortraitError, match="mask"):
        paste_back(image, frames, box, PasteOptions(mask="circle"))


def test_manual_box_in_the_corner_of_a_wide_picture_is_not_taken_for_a_full_crop():
    """Regression: a manual (0, 0, 300) box on a 300x100 picture used to be stretched over the whole picture."""
    picture = torch.rand(100, 300, 3)
    _, box, _ = crop_portrait(picture, mode="manual", box=(0, 0, 300))
    assert box.mode == "manual"
    frames = torch.zeros(1, 256, 256, 3)
    out = paste_back(picture, frames, box, PasteOptions(feather=0.1, mask="box", color_match=False))[0]
    weight = feather_mask(300, 0.1)[:100, :300]
    expected = picture * (1 - weight[..., None])  # black frame blended with the feathered square's top third
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(out[0], picture[0], atol=2e-3)  # the top edge is feathered (the bug replaced it by 0)


def test_full_crop_of_a_wide_picture_is_stretched_back_over_all_of_it():
    picture = torch.rand(100, 300, 3)
    _, box, _ = crop_portrait(picture, mode="full")
    assert box.mode == "full"
    frames = torch.full((2, 256, 256, 3), 0.25)
    out = paste_back(picture, frames, box, PasteOptions(feather=0.1))
    assert out.shape == (2, 100, 300, 3)
    assert torch.allclose(out, torch.full_like(out, 0.25), atol=1e-5)


def test_head_mask_is_a_soft_ellipse_inside_the_box():
    m = head_mask(256, 0.1)
    assert m.shape == (256, 256)
    assert float(m[140, 128]) == pytest.approx(1.0)  # face centre of the training framing
    assert float(m[:, 0].max()) == 0 and float(m[0].max()) < 1e-3  # nothing at the box edge: no square seam
    assert float(m[250, 5]) == 0 and float(m[5, 250]) == 0  # corners (shoulders, background) stay original
    row = m[140, :128]
    assert bool((row[1:] >= row[:-1]).all())  # rises monotonically towards the head
    # a detected face moves and scales the ellipse
    left = head_mask(256, 0.1, face=(0.3, 0.5, 0.3))
    assert float(left[128, 77]) == pytest.approx(1.0) and float(left[128, 200]) == 0


def test_head_mask_keeps_the_picture_outside_the_head():
    image = load("statue.jpg")
    _, box, _ = crop_portrait(image)
    out = paste_back(image, torch.rand(2, 256, 256, 3), box, PasteOptions(mask="head", color_match=False))
    mask = head_mask(box.size, 0.1, box.face)
    full = torch.zeros(512, 512)
    ya, xa, yb, xb = max(box.y0, 0), max(box.x0, 0), min(box.y1, 512), min(box.x1, 512)
    full[ya:yb, xa:xb] = mask[ya - box.y0: yb - box.y0, xa - box.x0: xb - box.x0]
    untouched = full == 0
    assert untouched.float().mean() > 0.2  # this head fills most of the picture
    assert torch.equal(out[:, untouched], image[None, untouched].expand(2, -1, -1))
    assert not torch.equal(out[:, full == 1], image[None, full == 1].expand(2, -1, -1))


def test_colour_match_removes_a_renderer_colour_cast_with_one_gain_for_the_clip():
    image = load("monalisa.jpg")
    clean, box = perfect_render(image)
    cast = torch.tensor([1.12, 0.95, 0.88])
    frames = (clean * cast).clamp(0, 1).repeat(3, 1, 1, 1)
    frames[2] = frames[2] * 0.5  # a later, darker frame must not change the clip's colour match
    plain = paste_back(image, frames, box, PasteOptions(color_match=False))
    matched = paste_back(image, frames, box, PasteOptions(color_match=True))
    comp = Compositor(image, box).match_colors(frames[0].permute(2, 0, 1))
    gain = torch.tensor(comp.color.gain)
    assert torch.allclose(gain * cast, torch.ones(3), atol=0.03), gain
    assert "colour matched" in comp.note
    centre = (slice((box.y0 + box.y1) // 2 - 30, (box.y0 + box.y1) // 2 + 30),
              slice((box.x0 + box.x1) // 2 - 30, (box.x0 + box.x1) // 2 + 30))
    err_plain = (plain[0][centre] - image[centre]).abs().mean()
    err_matched = (matched[0][centre] - image[centre]).abs().mean()
    assert err_matched < 0.4 * err_plain, (err_matched, err_plain)
    # one gain for the whole clip: frame 2 is frame 0 at half brightness, and stays so after matching
    ratio = matched[2][centre].mean(dim=(0, 1)) / matched[0][centre].mean(dim=(0, 1))
    assert torch.allclose(ratio, torch.full((3,), 0.5), atol=0.02), ratio


def test_colour_match_refuses_frames_of_another_picture():
    match = ColorMatch.estimate(torch.full((3, 8, 8), 0.9), torch.full((3, 8, 8), 0.2), torch.ones(8, 8))
    assert match.gain == (1.0, 1.0, 1.0) and "differ too much" in match.note


def test_uint8_paste_equals_the_float_paste_rounded():
    image = load("aiface7.png")  # RGBA: alpha composited over white on both paths
    _, box, _ = crop_portrait(image)
    frames = torch.rand(3, 3, 256, 256)
    comp_f, comp_u = (Compositor(image, box).match_colors(frames[0]) for _ in range(2))
    as_float = comp_f.paste(frames)
    as_uint8 = comp_u.paste_uint8(frames)
    assert as_uint8.dtype == np.uint8 and as_uint8.shape == tuple(as_float.shape)
    assert np.array_equal(as_uint8, as_float.mul(255).round().to(torch.uint8).numpy())


def test_colour_match_is_fixed_by_the_first_frame_before_anything_is_pasted():
    image = load("monalisa.jpg")
    clean, box = perfect_render(image)
    frames = (clean * torch.tensor([1.1, 1.0, 0.9])).clamp(0, 1).permute(0, 3, 1, 2)
    with pytest.raises(RuntimeError, match="match_colors"):
        Compositor(image, box).paste(frames)  # no reference: nothing is pasted with a gain from some other frame
    darker = frames * 0.7
    comp = Compositor(image, box).match_colors(frames[0])
    assert comp.color.gain == Compositor(image, box).match_colors(frames[0]).color.gain
    assert comp.paste(darker).shape[0] == 1 and comp.color.gain != Compositor(image, box).match_colors(
        darker[0]).color.gain  # pasting a darker frame later does not move the clip's gain
    assert Compositor(image, box, PasteOptions(color_match=False)).paste(frames).shape[0] == 1  # nothing to match
