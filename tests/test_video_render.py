"""Streaming a motion into a video: same frames as Render Frames -> Paste Back, batch by batch, no partial files."""

from __future__ import annotations

import wave

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tests.support.golden import MEDIA
from tests.support.stand_in import patterned
from PIL import Image

import anitalker_core.video.video_render as video_render
from anitalker_core.errors import Interrupted, MotionError, PortraitError
from anitalker_core.image.paste_back import Compositor, PasteOptions, paste_back
from anitalker_core.image.upscale import Upscaler
from anitalker_core.models.motion_autoencoder import MotionAutoencoder
from anitalker_core.pipeline import portrait_from_image
from anitalker_core.stages import VideoWrite
from anitalker_core.video.renderer import render_frames
from anitalker_core.video.video_render import VideoRender
from anitalker_core.video.frame_sequence import FrameSequenceWriter
from anitalker_core.video.writers import Mp4Writer

FRAMES = 4


@pytest.fixture(scope="module")
def scene():
    """A portrait encoded by a random-weight renderer whose decoder is the stand-in (the streaming around the render
    is under test here), a picture taller than wide with room below the head, and a few frames of motion."""
    torch.manual_seed(0)
    renderer = MotionAutoencoder().eval()
    picture = torch.from_numpy(np.asarray(Image.open(MEDIA / "monalisa.jpg")).copy()).float().div(255)
    picture = torch.cat([picture, torch.ones(100, 512, 3)], dim=0)  # 512x612: not square, room below the head
    portrait = portrait_from_image(patterned(renderer), picture)
    latents = portrait.alpha0.cpu() + 0.3 * torch.randn(FRAMES, 20)
    return renderer, picture, portrait, latents


def nearest_2x() -> Upscaler:
    return Upscaler(lambda x: F.interpolate(x, scale_factor=2, mode="nearest"), scale=2)


def collect(clip: VideoRender, **kwargs) -> np.ndarray:
    return np.concatenate(list(VideoWrite(clip).pieces(**kwargs)))


def test_streamed_paste_back_equals_render_frames_then_paste_back(scene):
    renderer, picture, portrait, latents = scene
    clip = VideoRender(renderer, portrait, latents, original=picture, batch_size=2).check()
    assert clip.size == (512, 612) and clip.num_frames == FRAMES
    streamed = collect(clip)
    images = paste_back(picture, render_frames(renderer, portrait, latents, batch_size=2), portrait.crop)
    reference = images.mul(255).round().to(torch.uint8).numpy()
    assert streamed.shape == reference.shape == (FRAMES, 612, 512, 3)
    assert int(np.abs(streamed.astype(int) - reference.astype(int)).max()) <= 1


def test_upscaled_crop_and_upscaled_paste_back(scene):
    renderer, picture, portrait, latents = scene
    crop_clip = VideoRender(renderer, portrait, latents[:2], upscaler=nearest_2x()).check()
    assert crop_clip.size == (512, 512)
    frames = collect(crop_clip)
    plain = render_frames(renderer, portrait, latents[:2]).mul(255).round().to(torch.uint8).numpy()
    assert np.array_equal(frames[:, ::2, ::2], plain)
    pasted = collect(VideoRender(renderer, portrait, latents[:2], original=picture, upscaler=nearest_2x()))
    assert pasted.shape == (2, 612, 512, 3)


def test_frames_are_rendered_lazily_in_bounded_pieces(scene, monkeypatch):
    renderer, picture, portrait, latents = scene
    calls = []
    real = renderer.render
    monkeypatch.setattr(renderer, "render", lambda *a: calls.append(a[1].shape[0]) or real(*a))
    monkeypatch.setattr(video_render, "PIXELS_PER_PIECE", 512 * 612)  # one pasted frame per piece
    stream = VideoWrite(VideoRender(renderer, portrait, latents, original=picture, batch_size=2)).pieces()
    assert calls == []  # nothing rendered before it is asked for
    first = next(stream)
    assert first.shape == (1, 612, 512, 3) and calls == [2, 1]  # the first batch, and frame 0 alone for colours
    rest = list(stream)
    assert [len(p) for p in rest] == [1] * (FRAMES - 1) and sum(calls) == FRAMES + 1


def test_progress_preview_and_cancel_between_batches(scene, tmp_path):
    renderer, picture, portrait, latents = scene
    seen, previews = [], []

    def callback(done, total):
        seen.append((done, total))
        if done >= 2:
            raise Interrupted("cancelled")

    out = tmp_path / "clip.mp4"
    clip = VideoRender(renderer, portrait, latents, original=picture, batch_size=2)
    with pytest.raises(Interrupted):
        VideoWrite(clip).run([Mp4Writer(out)], callback=callback, preview=previews.append)
    assert seen == [(2, FRAMES)]
    assert previews and previews[0].shape == (612, 512, 3) and previews[0].dtype == torch.float32
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no half video under any name


def test_writes_mp4_and_png_sequence_with_audio(scene, tmp_path):
    renderer, picture, portrait, latents = scene
    rate = 44100
    audio = torch.sin(torch.arange(rate) / rate * 2 * torch.pi * 220)[None, None].repeat(1, 2, 1) * 0.3
    clip = VideoRender(renderer, portrait, latents, original=picture)
    mp4, folder = tmp_path / "out.mp4", tmp_path / "frames"
    written = VideoWrite(clip).run([Mp4Writer(mp4), FrameSequenceWriter(folder)], audio=(audio, rate))
    assert written == FRAMES
    with av.open(str(mp4)) as c:
        assert {s.type for s in c.streams} == {"video", "audio"}
        assert (c.streams.video[0].width, c.streams.video[0].height) == (512, 612)
        assert sum(1 for _ in c.decode(video=0)) == FRAMES
    pngs = sorted(folder.glob("frame_*.png"))
    assert [p.name for p in pngs] == [f"frame_{i:06d}.png" for i in range(1, FRAMES + 1)]
    first = np.asarray(Image.open(pngs[0]))
    assert first.shape == (612, 512, 3)
    assert np.array_equal(first, next(VideoWrite(clip).pieces())[0])  # PNG is lossless
    with wave.open(str(folder / "audio.wav")) as w:
        assert w.getnchannels() == 2 and w.getframerate() == rate
        assert abs(w.getnframes() - FRAMES / 25 * rate) <= 1  # cut to the video's length


def test_bad_clips_are_refused_before_rendering(scene):
    renderer, picture, portrait, latents = scene
    with pytest.raises(PortraitError, match="same image"):
        VideoRender(renderer, portrait, latents, original=picture[:300]).check()
    with pytest.raises(PortraitError, match="feather"):
        VideoRender(renderer, portrait, latents, original=picture, paste=PasteOptions(feather=0.9)).check()
    with pytest.raises(MotionError, match="numbers per frame"):
        VideoRender(renderer, portrait, latents[:, :10]).check()
    with pytest.raises(MotionError, match="NaN"):
        VideoRender(renderer, portrait, latents * float("nan")).check()


def test_colour_match_is_the_same_whatever_the_batch_size(scene, monkeypatch):
    """The clip's first frame fixes the colour gain, so cutting the clip into other batches changes no pixel."""
    renderer, picture, portrait, latents = scene
    cast = Upscaler(lambda x: (x * torch.tensor([1.1, 1.0, 0.9]).view(1, 3, 1, 1)).clamp(0, 1), scale=1)
    clips = [VideoRender(renderer, portrait, latents[:3], original=picture, upscaler=cast, batch_size=b).check()
             for b in (1, 3)]
    references = []
    real = Compositor.match_colors
    monkeypatch.setattr(Compositor, "match_colors", lambda self, ref: references.append(ref.clone()) or real(self, ref))
    one_by_one, at_once = (collect(c) for c in clips)
    assert len(references) == 2 and torch.equal(references[0], references[1])
    # the network may round a frame a little differently in another batch: within 1/255, nothing more
    assert int(np.abs(one_by_one.astype(int) - at_once.astype(int)).max()) <= 1


def test_writing_goes_on_from_the_estimate_and_renders_no_frame_twice(scene, tmp_path, monkeypatch):
    renderer, picture, portrait, latents = scene
    rendered = []
    real = renderer.render
    monkeypatch.setattr(renderer, "render", lambda *a: rendered.append(a[1].shape[0]) or real(*a))
    stage = VideoWrite(VideoRender(renderer, portrait, latents, original=picture, batch_size=1).check())
    step = stage.estimate()
    warm = sum(rendered)
    assert 0 < warm < FRAMES + 1 and [p.name for p in step.parts] == ["rendering", "paste back", "encoding"]
    stage.run([Mp4Writer(tmp_path / "clip.mp4")])
    assert sum(rendered) == FRAMES  # the warm-up's frames were written, not rendered again
    with av.open(str(tmp_path / "clip.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == FRAMES


def test_a_window_of_a_clip_is_those_frames_of_the_whole_with_its_colours(scene):
    from anitalker_core.video.clip_edits import Crop

    renderer, picture, portrait, latents = scene
    clip = VideoRender(renderer, portrait, latents, original=picture, batch_size=2,
                       paste=PasteOptions(mask="head", color_match=True)).check()
    whole = collect(clip)
    window = clip.trimmed(1, 2)
    assert window.num_frames == 2 and torch.equal(window.reference_frame(), clip.reference_frame())
    part = collect(window)
    assert part.shape == (2, 612, 512, 3)
    assert int(np.abs(part.astype(int) - whole[1:3].astype(int)).max()) <= 1
    cropped = window.reshaped(Crop(10, 20, 100, 60))  # a crop of the window: each of its frames, cut alike
    assert cropped.size == (100, 60)
    assert np.array_equal(collect(cropped), part[:, 20:80, 10:110])
    assert torch.equal(cropped.matte(), clip.matte()[20:80, 10:110])
    with pytest.raises(MotionError, match="not within"):
        clip.trimmed(3, 2)
