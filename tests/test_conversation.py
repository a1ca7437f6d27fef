"""Conversations: two faces of one picture, each with its own voice, rendered together batch by batch.

The layering is checked with a stand-in renderer (each frame is the portrait's crop, brightened by its motion), so
the checks cost no rendering; the real renderer runs the same chain in tests/test_e2e_comfyui.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tests.support.golden import MEDIA
from tests.support.says import says

import anitalker_core.video.video_render as video_render
from anitalker_core.audio.tracks import mix, same_length, split_stereo
from anitalker_core.errors import AudioError, PortraitError
from anitalker_core.image.face_numbers import numbered_faces
from anitalker_core.image.paste_back import Compositor
from anitalker_core.image.portrait_crop import crop_portrait
from anitalker_core.models.motion_autoencoder import MotionAutoencoder
from anitalker_core.stages import VideoWrite
from anitalker_core.types import CropBox, PortraitCode
from anitalker_core.video.conversation import hold_at_rest, onto
from anitalker_core.video.faces import owned_mattes
from anitalker_core.video.video_render import OutputPixels, VideoRender


def two_faces(side: int = 256) -> torch.Tensor:
    """Two sample portraits side by side: (side, 2*side, 3) 0..1."""
    halves = [np.asarray(Image.open(MEDIA / n).convert("RGB").resize((side, side))) for n in ("monalisa.jpg",
                                                                                              "statue.jpg")]
    return torch.from_numpy(np.concatenate(halves, axis=1).copy()).float().div(255)


@pytest.fixture(scope="module")
def picture():
    return two_faces()


@pytest.fixture
def rendered(monkeypatch):
    """The stand-in renderer; records how many frames each call renders."""
    calls = []

    def frames(model, portrait, latents, batch_size=None):
        step = batch_size or latents.shape[0]
        for s in range(0, latents.shape[0], step):
            part = latents[s: s + step]
            calls.append(part.shape[0])
            gain = 0.8 + 0.2 * torch.sin(part.sum(dim=1)).view(-1, 1, 1, 1)
            yield s, ((portrait.image + 1) / 2 * gain).clamp(0, 1)

    monkeypatch.setattr(video_render, "iter_frames", frames)
    return calls


@pytest.fixture(scope="module")
def renderer():
    return MotionAutoencoder().eval()


@pytest.fixture(scope="module")
def crops(picture):
    return {face: crop_portrait(picture, face=face) for face in (0, 1, 2)}


@pytest.fixture(scope="module")
def faces(crops):
    return portrait(crops[1]), portrait(crops[2])


def portrait(cropped):
    crop, box, note = cropped
    return PortraitCode(image=crop, wa=torch.zeros(1, 512), alpha0=torch.zeros(1, 20), feats=(), crop=box, note=note)


def clip(renderer, portrait_, frames, seed, **kwargs):
    latents = torch.randn(frames, 20, generator=torch.Generator().manual_seed(seed))
    return VideoRender(renderer, portrait_, latents, batch_size=2, **kwargs)


def test_faces_are_numbered_from_the_left_and_a_missing_one_says_how_many(picture, crops):
    (_, largest, note), (_, left, _), (_, right, _) = crops[0], crops[1], crops[2]
    assert left.x0 + left.size / 2 < 256 < right.x0 + right.size / 2
    assert largest == right  # the statue's face is the larger
    says(note, "2 faces", "from the left", "face 2")
    assert len(left.faces) == 2 and left.faces[0][0] < left.faces[1][0]
    with pytest.raises(PortraitError) as info:
        crop_portrait(picture, face=3)
    says(str(info.value), "face 3", "2 faces", "512x256")
    shown = numbered_faces(picture, left)
    assert shown.shape == (1, 256, 256, 3) and bool((shown != numbered_faces(picture, CropBox(0, 0, 8, 512, 256))).any())


def test_two_faces_talk_in_one_picture_each_in_its_own_region(picture, faces, renderer, rendered):
    a = clip(renderer, faces[0], 3, seed=1, original=picture)
    b = clip(renderer, faces[1], 6, seed=2)  # the longer track: the first face ends and rests
    talk = onto(a.check(), b).check()
    assert talk.num_frames == 6 and talk.size == (512, 256) and len(talk.beneath) == 1
    assert torch.equal(talk.beneath[0].latents, hold_at_rest(a.latents, 6, a.fps))
    frames = np.concatenate(list(VideoWrite(talk).pieces()))
    assert frames.shape == (6, 256, 512, 3)
    assert max(rendered) <= 2  # every face renders one batch at a time
    mattes = owned_mattes([Compositor(picture, f.portrait.crop).matte() for f in (a, b)])
    as_uint8 = picture.mul(255).round().to(torch.uint8).numpy()
    outside = (mattes[0] == 0) & (mattes[1] == 0)
    assert bool((frames[:, outside] == as_uint8[outside]).all()) and outside.float().mean() > 0.2
    frames = frames.astype(np.int16)
    for owned in mattes:  # both heads move over the clip
        region = owned > 0.5
        assert np.abs(frames[1:4, region] - frames[:3, region]).mean() > 0.5
    with pytest.raises(PortraitError) as info:
        VideoWrite(onto(a, clip(renderer, faces[1], 3, seed=3,
                                pixels=OutputPixels(matte=True, head_only=True))).check())
    says(str(info.value), "head only", "several faces")


def test_overlapping_masks_are_clipped_so_each_face_keeps_its_own_pixels(picture):
    near = [Compositor(picture, CropBox(x, 0, 256, 512, 256, mode="manual")) for x in (40, 200)]
    raw = [c.matte() for c in near]
    assert bool(((raw[0] > 0) & (raw[1] > 0)).any())  # the head masks overlap
    owned = owned_mattes(raw)
    assert not bool(((owned[0] > 0) & (owned[1] > 0)).any())
    centres = [(128, 40 + 128), (128, 200 + 128)]
    for (y, x), mask, kept in zip(centres, raw, owned):
        assert float(kept[y, x]) == float(mask[y, x]) > 0.99  # each face's own centre is its own
    assert torch.equal(sum(owned), torch.maximum(*raw))  # the combined weight has no seam


def test_a_finished_track_glides_to_rest_and_holds():
    latents = torch.randn(20, 20, generator=torch.Generator().manual_seed(0))
    held = hold_at_rest(latents, 40, 25)
    assert held.shape == (40, 20) and torch.equal(held[:20], latents)
    assert torch.equal(held[35], held[39])  # at rest
    assert float((held[21] - latents[-1]).abs().max()) < float((held[30] - latents[-1]).abs().max())


def test_conversation_tracks_split_stereo_pad_and_mix():
    stereo = torch.stack([torch.full((800,), 0.6), torch.full((800,), -0.2)])
    (left, rate), (right, _) = split_stereo(stereo[None], 16000)
    assert rate == 16000 and torch.equal(left[0], stereo[0]) and torch.equal(right[0], stereo[1])
    with pytest.raises(AudioError) as info:
        split_stereo(torch.zeros(1, 1, 800), 16000)
    says(str(info.value), "1 channel", "stereo", "each speaker")
    (a, ra), (b, rb) = same_length([(torch.ones(1, 800), 16000), (torch.ones(1, 1600) * 0.5, 16000)])
    assert a.shape == b.shape == (1, 1600) and float(a[0, 900]) == 0.0
    mixed, rate = mix([(torch.full((1, 800), 0.9), 16000), (torch.full((2, 400), 0.9), 16000)])
    assert mixed.shape == (2, 800) and float(mixed.abs().max()) <= 1.0
