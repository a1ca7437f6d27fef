"""Frames for compositing: 16-bit PNG and EXR with the renderer's precision, the head's matte as alpha or its own
files, ProRes 4444 with alpha, the sidecar, and nothing under the final name after a cancel."""

from __future__ import annotations

import io
import json
import wave

import av
import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from tests.support.golden import MEDIA
from tests.support.says import says

from anitalker_core.errors import AniTalkerError, Interrupted
from anitalker_core.image.paste_back import Compositor
from anitalker_core.models.motion_autoencoder import MotionAutoencoder
from anitalker_core.pipeline import portrait_from_image
from anitalker_core.stages import VideoWrite
from anitalker_core.video.frame_sequence import FrameSequenceWriter, SequenceOptions, check_sequence_folder
from anitalker_core.video.video_render import OutputPixels, VideoRender
from anitalker_core.video.writers import ProResWriter

FRAMES = 2
RATE = 16000


@pytest.fixture(scope="module")
def scene():
    """A 320x300 picture with the portrait inside it, room around the head, and a few frames of motion."""
    torch.manual_seed(0)
    renderer = MotionAutoencoder().eval()
    face = Image.open(MEDIA / "monalisa.jpg").convert("RGB").resize((240, 240), Image.BICUBIC)
    canvas = Image.new("RGB", (320, 300), (40, 90, 150))
    canvas.paste(face, (50, 50))
    picture = torch.from_numpy(np.asarray(canvas).copy()).float().div(255)
    portrait = portrait_from_image(renderer, picture)
    latents = portrait.alpha0.cpu() + 0.3 * torch.randn(FRAMES, 20)
    audio = torch.sin(torch.arange(RATE) / RATE * 2 * torch.pi * 220)[None] * 0.3
    return renderer, picture, np.asarray(canvas), portrait, latents, audio


class Kept:
    """A writer that keeps what it is given: the float frames every other writer of the run encoded."""

    def __init__(self):
        self.pieces = []

    def add_audio_stream(self, *args):
        pass

    def write(self, frames):
        self.pieces.append(frames.copy())

    def write_audio(self, *args):
        pass

    def close(self):
        pass

    def abort(self):
        pass


@pytest.fixture(scope="module")
def written(scene, tmp_path_factory):
    """One render of the clip pasted back, float samples with the matte, into four deliverables at once."""
    renderer, picture, _, portrait, latents, audio = scene
    out = tmp_path_factory.mktemp("deliverables")
    clip = VideoRender(renderer, portrait, latents, original=picture, batch_size=1,
                       pixels=OutputPixels("float32", matte=True)).check()
    kept = Kept()
    writers = [FrameSequenceWriter(out / "png16", options=SequenceOptions("png16", "alpha", 1001),
                                   layout=clip.layout()),
               FrameSequenceWriter(out / "exr", options=SequenceOptions("exr", "alpha")),
               FrameSequenceWriter(out / "jpg", options=SequenceOptions("jpg", "separate"), name="shot"),
               ProResWriter(out / "clip.mov", alpha=True), kept]
    VideoWrite(clip, [w.options for w in writers[:3]] + ["mov"]).run(writers, audio=(audio, RATE))
    return out, clip, np.concatenate(kept.pieces)


def test_the_matte_is_zero_far_from_the_head_and_one_at_its_centre(scene, written):
    _, picture, _, portrait, _, _ = scene
    _, clip, frames = written
    matte = clip.matte()
    assert matte.shape == (300, 320) and float(matte.min()) == 0 and float(matte.max()) == 1
    box = portrait.crop
    cx, cy, side = box.face
    assert float(matte[int(box.y0 + cy * box.size), int(box.x0 + cx * box.size)]) == 1  # the face's centre
    assert float(matte[:, :box.x0].abs().max()) == 0 and float(matte[:8].abs().max()) == 0  # far from it
    assert np.array_equal(frames[..., 3], np.broadcast_to(matte.numpy(), frames.shape[:3]))


def test_png16_is_really_16_bit_and_the_picture_stays_as_loaded(scene, written):
    _, _, canvas, _, _, _ = scene
    out, _, frames = written
    files = sorted((out / "png16").glob("frame_*.png"))
    assert [f.name for f in files] == [f"frame_{n:06d}.png" for n in (1001, 1002)]
    bgra = cv2.imread(str(files[-1]), cv2.IMREAD_UNCHANGED)
    assert bgra.dtype == np.uint16 and bgra.shape == (300, 320, 4)
    rgba = bgra[..., [2, 1, 0, 3]]
    assert np.array_equal(rgba, np.rint(frames[-1] * 65535).astype(np.uint16))  # quantised once, from float
    head = frames[-1][..., 3] > 0.5
    levels = np.unique(rgba[head][:, :3])
    assert len(levels) > 256 and np.mean(levels % 257 != 0) > 0.9  # not an 8-bit frame scaled up
    outside = rgba[..., 3] == 0
    assert outside.mean() > 0.3 and np.array_equal(rgba[outside][:, :3], canvas[outside].astype(np.uint16) * 257)
    assert 0 < rgba[..., 3].mean() < 65535


def test_exr_reads_back_as_the_float_frames_in_half_precision(written):
    out, _, frames = written
    files = sorted((out / "exr").glob("frame_*.exr"))
    assert [f.name for f in files] == [f"frame_{n:06d}.exr" for n in (1, 2)]
    with av.open(str(files[1])) as container:  # FFmpeg's EXR decoder, the writer's own reader
        frame = next(container.decode(video=0))
    assert frame.format.name == "gbrapf16le"
    g, b, r, a = (np.frombuffer(p, np.float16).reshape(p.height, -1)[:, : p.width] for p in frame.planes)
    assert np.array_equal(np.stack([r, g, b, a], axis=-1), frames[1].astype(np.float16))  # nearest half


def test_separate_matte_jpeg_names_audio_and_sidecar(scene, written):
    _, _, _, portrait, _, _ = scene
    out, _, frames = written
    folder = out / "jpg"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"shot_{n:06d}.jpg" for n in (1, 2)] + [f"matte_{n:06d}.png" for n in (1, 2)]
        + ["audio.wav", "sequence.json"])
    matte = np.asarray(Image.open(folder / "matte_000002.png"))
    assert matte.dtype == np.uint8 and np.array_equal(matte, np.rint(frames[1][..., 3] * 255).astype(np.uint8))
    assert np.asarray(Image.open(folder / "shot_000001.jpg")).shape == (300, 320, 3)
    with wave.open(str(folder / "audio.wav")) as w:
        assert w.getframerate() == RATE and w.getnframes() == FRAMES * RATE // 25  # cut to the frames
    side = json.loads((out / "png16" / "sequence.json").read_text())
    assert side["frames"] == {**side["frames"], "pattern": "frame_%06d.png", "first": 1001, "last": 1002,
                              "count": 2, "format": "png16", "channels": "RGBA"}
    assert side["fps"] == 25 and side["size"] == {"width": 320, "height": 300}
    assert side["matte"]["mode"] == "alpha" and side["matte"]["alpha"] == "straight"
    assert side["audio"]["sample_rate"] == RATE and side["audio"]["offset_s"] == 0
    box = portrait.crop
    assert side["layout"]["crop_box"] == {"x": box.x0, "y": box.y0, "size": box.size, "mode": "auto"}
    assert side["layout"]["paste_region"] == {"x0": box.x0, "y0": box.y0, "x1": box.x1, "y1": box.y1}


def test_prores_4444_decodes_with_the_matte_as_alpha(written):
    out, _, frames = written
    with av.open(str(out / "clip.mov")) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "prores" and video.codec_context.profile == "4444"
        assert container.streams.audio[0].codec_context.name == "pcm_s16le"
        decoded = list(container.decode(video=0))
    assert len(decoded) == FRAMES
    plane = decoded[-1].planes[3]
    bits = 12 if "12" in decoded[-1].format.name else 10
    alpha = np.frombuffer(plane, np.uint16).reshape(plane.height, -1)[:, : plane.width] / (2**bits - 1)
    assert np.abs(alpha - frames[-1][..., 3]).max() <= 1 / 1023  # within 10-bit quantisation
    rgb = decoded[-1].to_ndarray(format="rgb24")
    assert np.abs(rgb.astype(int) - np.rint(frames[-1][..., :3] * 255)).mean() < 1.5


def test_the_head_alone_laid_over_the_picture_through_its_alpha_is_the_pasted_frame(scene):
    renderer, picture, _, portrait, latents, _ = scene
    clip = VideoRender(renderer, portrait, latents[:1], original=picture).check()
    first = next(iter(clip.batches()))[1]
    compositor = Compositor(picture, portrait.crop, clip.paste).match_colors(first[0])
    head = (compositor.paste_samples(first, "uint16", matte=True, head_only=True)[0] / 65535).astype(np.float32)
    box = portrait.crop
    assert head[:box.y0].max() == 0 and head[:, box.x1:].max() == 0  # transparent and black outside the head's box
    over = picture.numpy() * (1 - head[..., 3:]) + head[..., :3] * head[..., 3:]
    assert np.abs(over - compositor.paste(first)[0].numpy()).max() <= 2 / 65535
    # EXR keeps colour premultiplied by alpha (its convention); PNG keeps it straight
    exr = FrameSequenceWriter(None, options=SequenceOptions("exr", "alpha", head_only=True)).encode(head)[0][1]
    with av.open(io.BytesIO(exr)) as container:
        frame = next(container.decode(video=0))
    g, b, r, a = (np.frombuffer(p, np.float16).reshape(p.height, -1)[:, : p.width] for p in frame.planes)
    expected = (head[..., :3] * head[..., 3:]).astype(np.float32).astype(np.float16)
    assert np.abs(np.stack([r, g, b], axis=-1).astype(np.float32) - expected).max() <= 1e-3


def test_cancel_leaves_no_sequence_under_any_name(scene, tmp_path):
    renderer, picture, _, portrait, latents, _ = scene
    clip = VideoRender(renderer, portrait, latents, original=picture, batch_size=1,
                       pixels=OutputPixels("uint16", matte=True))

    def cancel(done, total):
        if done >= 1:
            raise Interrupted("cancelled")

    options = SequenceOptions("png16", "alpha")
    with pytest.raises(Interrupted):
        VideoWrite(clip, [options]).run([FrameSequenceWriter(tmp_path / "shot", options=options)], callback=cancel)
    assert list(tmp_path.iterdir()) == []


def test_bad_options_and_occupied_folders_are_refused_with_the_fix(tmp_path):
    with pytest.raises(AniTalkerError) as info:
        SequenceOptions("jpg", "alpha").check()
    says(str(info.value), "JPEG has no alpha", "separate", "png16")
    with pytest.raises(AniTalkerError, match="needs a matte"):
        SequenceOptions("png", "none", head_only=True).check()
    with pytest.raises(AniTalkerError, match="from 0 to"):
        SequenceOptions(first_frame=-1).check()
    with pytest.raises(AniTalkerError, match="not one of"):
        SequenceOptions("tiff").check()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(AniTalkerError) as info:
        check_sequence_folder(busy)
    says(str(info.value), str(busy), "other files", "new or empty folder")
    with pytest.raises(AniTalkerError, match="no matte"):  # asked for a matte, given frames without one
        FrameSequenceWriter(None, options=SequenceOptions("png", "alpha")).write(np.zeros((1, 4, 4, 3), np.uint8))


def test_a_new_sequence_replaces_an_earlier_one_whole(tmp_path):
    folder = tmp_path / "seq"
    for count in (3, 1):
        writer = FrameSequenceWriter(folder, options=SequenceOptions("png"))
        writer.write(np.full((count, 4, 6, 3), 7, np.uint8))
        assert not folder.exists() or len(list(folder.glob("*.png"))) == 3  # nothing replaced before close
        writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"]
    assert sorted(p.name for p in folder.iterdir()) == ["frame_000001.png", "sequence.json"]
