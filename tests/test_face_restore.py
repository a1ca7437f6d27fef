"""Face restoration: spandrel's face models recognised and run the way their authors feed them, inside the streaming
video path (restore, then upscale, then paste back) and as an IMAGE stage."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tests.support.golden import MEDIA
from tests.support.image_models import write_restoreformer
from tests.support.says import says
from tests.support.stand_in import patterned

from anitalker_core.errors import AniTalkerError, Interrupted
from anitalker_core.image.face_restore import FaceRestorer, RestoreOptions
from anitalker_core.image.paste_back import Compositor
from anitalker_core.image.upscale import Upscaler, load_upscale_model, split_models
from anitalker_core.models.motion_autoencoder import MotionAutoencoder
from anitalker_core.pipeline import portrait_from_image
from anitalker_core.stages import FaceRestoreImages, VideoWrite
from anitalker_core.stages.measure import measure
from anitalker_core.video.video_render import VideoRender

CPU = torch.device("cpu")


def bicubic(frames: torch.Tensor, side: int = 512) -> torch.Tensor:
    return F.interpolate(frames, size=(side, side), mode="bicubic", align_corners=False).clamp(0, 1)


def u8(frames: torch.Tensor) -> np.ndarray:
    return frames.permute(0, 2, 3, 1).mul(255).round().to(torch.uint8).numpy()


class Recorder:
    """A stand-in face network: a fixed, visible change (the face mirrored and darkened), recording its inputs."""

    def __init__(self) -> None:
        self.inputs: list[tuple[torch.Tensor, float]] = []

    def __call__(self, faces: torch.Tensor, fidelity: float) -> torch.Tensor:
        self.inputs.append((faces.clone(), fidelity))
        return faces.flip(-1) * 0.8 - 0.1

    @property
    def frames(self) -> int:
        return sum(x.shape[0] for x, _ in self.inputs)


@pytest.fixture(scope="module")
def scene():
    """A renderer whose warp decoder is swapped for a cheap pattern driven by the motion (the restore, not the
    render, is under test here), a picture taller than wide with room below the head, and its portrait."""
    torch.manual_seed(0)
    renderer = MotionAutoencoder().eval()
    picture = torch.from_numpy(np.asarray(Image.open(MEDIA / "monalisa.jpg")).copy()).float().div(255)
    picture = torch.cat([picture, torch.ones(100, 512, 3)], dim=0)
    portrait = portrait_from_image(patterned(renderer), picture)
    latents = portrait.alpha0.cpu() + 0.3 * torch.randn(12, 20)
    return renderer, picture, portrait, latents


@pytest.fixture(scope="module")
def restoreformer(tmp_path_factory):
    return write_restoreformer(tmp_path_factory.mktemp("faces") / "RestoreFormer.pth")


def test_the_network_gets_minus_one_to_one_and_its_output_is_mapped_back_and_blended():
    """The formula written out by hand on a small input: x' = 2x - 1, face = clamp((net(x') + 1) / 2), out =
    x + s (face - x); the fidelity reaches the network; strength 0 does not run it."""
    net = Recorder()
    frames = torch.rand(3, 3, 4, 4)
    restorer = FaceRestorer(net, side=4, options=RestoreOptions(strength=0.25, fidelity=0.7), batch=2)
    out = restorer(frames)
    face = ((frames.flip(-1) * 2 - 1) * 0.8 - 0.1 + 1) / 2  # already inside 0..1 here
    assert torch.allclose(out, frames + 0.25 * (face - frames), atol=1e-6)
    assert [x.shape[0] for x, _ in net.inputs] == [2, 1] and all(w == 0.7 for _, w in net.inputs)
    assert torch.allclose(net.inputs[0][0], frames[:2] * 2 - 1)
    clamped = FaceRestorer(lambda x, w: x * 3, side=4)(frames)  # outside -1..1 -> clamped to 0..1
    assert torch.equal(clamped, ((frames * 2 - 1) * 3 + 1).div(2).clamp(0, 1))
    plain = FaceRestorer(net, side=8, options=RestoreOptions(strength=0))(frames)
    assert net.frames == 3 and torch.equal(plain, bicubic(frames, 8))  # the stated filter, no network call


def test_options_and_inputs_are_checked_with_clear_messages():
    with pytest.raises(AniTalkerError) as info:
        RestoreOptions(strength=1.5).check()
    says(str(info.value), "restore_strength", "1.5", "between 0 and 1")
    with pytest.raises(AniTalkerError) as info:
        FaceRestorer(Recorder(), 512)(torch.rand(1, 3, 256, 200))
    says(str(info.value), "square", "200x256")
    face = FaceRestorer(Recorder(), 512, name="gfpgan.pth")
    sr = Upscaler(lambda x: x, scale=2)
    assert split_models([("upscale_model", face), ("face_model", sr)]) == (face, sr)  # either input, either kind
    with pytest.raises(AniTalkerError) as info:
        split_models([("upscale_model", face), ("face_model", face)])
    says(str(info.value), "upscale_model", "face_model", "face-restoration")


def test_a_restoreformer_file_is_a_512_face_model_run_like_spandrels_own_restoreformer(restoreformer):
    """RestoreFormer is the one face model whose spandrel call does the -1..1 scaling itself: an independent
    version of the formula to compare with."""
    import spandrel

    restorer = load_upscale_model(restoreformer, dtype=torch.float16)  # no fp16 in RestoreFormer: upcast
    assert isinstance(restorer, FaceRestorer) and restorer.side == 512
    says(restorer.name, "RestoreFormer.pth", "RestoreFormer", "512x512", "fp32")
    frame = torch.rand(1, 3, 256, 256)
    out = restorer(frame)
    assert out.shape == (1, 3, 512, 512) and out.dtype == torch.float32
    descriptor = spandrel.ModelLoader().load_from_file(str(restoreformer)).eval()
    assert torch.allclose(out, descriptor(bicubic(frame)), atol=1e-5)
    assert float((out - bicubic(frame)).abs().mean()) > 0.02  # the network changed the face


def test_a_gfpgan_file_is_recognised_as_a_512_face_model_kept_in_fp32(gfpgan_file):
    restorer = load_upscale_model(gfpgan_file, dtype=torch.float16)
    assert isinstance(restorer, FaceRestorer) and restorer.side == 512 and not restorer.has_fidelity
    says(restorer.name, "GFPGANv1.4.pth", "GFPGAN", "512x512", "fp32")


class AutocastProbe(torch.nn.Module):
    """A stand-in face network that records whether the CPU's autocast was on and its weights' precision."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.seen: list[tuple[bool, torch.dtype]] = []

    def forward(self, x, **kwargs):
        self.seen.append((torch.is_autocast_enabled("cpu"), self.weight.dtype))
        return x * self.weight


def probe_descriptor(arch: str = "GFPGAN"):
    from types import SimpleNamespace

    return SimpleNamespace(architecture=SimpleNamespace(id=arch), model=AutocastProbe(), supports_half=False,
                           purpose="FaceSR")


def test_only_gfpgan_runs_in_bf16_and_only_on_a_gpu_that_computes_it(monkeypatch):
    from anitalker_core.image import face_restore
    from anitalker_core.image.face_restore import FACE_ARCHITECTURES, face_autocast

    gpu = torch.device("cuda")
    monkeypatch.setattr(face_restore, "cuda_has_bf16", lambda device: torch.device(device).type == "cuda")
    assert face_autocast(FACE_ARCHITECTURES["GFPGAN"], gpu) == torch.bfloat16
    for arch in ("RestoreFormer", "CodeFormer"):  # codebook look-ups: bf16 rounding changes the entry picked
        assert face_autocast(FACE_ARCHITECTURES[arch], gpu) is None
    assert face_autocast(FACE_ARCHITECTURES["GFPGAN"], CPU) is None
    monkeypatch.setattr(face_restore, "cuda_has_bf16", lambda device: False)  # an older card emulates bf16
    assert face_autocast(FACE_ARCHITECTURES["GFPGAN"], gpu) is None


def test_the_autocast_precision_leaves_the_weights_and_an_exact_precision_turns_it_off(monkeypatch):
    """Where ``face_autocast`` picks bf16 (a GPU's case, put on the CPU here), the network runs under autocast, its
    weights stay fp32 (ComfyUI's descriptor is shared) and the name says so; ``exact`` runs the weights as they
    are; the faces come back in fp32 either way."""
    from anitalker_core.image import face_restore
    from anitalker_core.image.face_restore import face_restorer

    monkeypatch.setattr(face_restore, "face_autocast", lambda spec, device: torch.bfloat16)
    frames = torch.rand(2, 3, 16, 16)
    descriptor = probe_descriptor()
    restorer = face_restorer(descriptor, CPU, name="GFPGANv1.4.pth")
    out = restorer(frames)
    assert descriptor.model.seen == [(True, torch.float32)] and out.dtype == torch.float32
    says(restorer.name, "GFPGAN", "bf16 autocast")
    exact = face_restorer(descriptor, CPU, torch.float32, name="GFPGANv1.4.pth", exact=True)
    exact(frames)
    assert descriptor.model.seen[-1] == (False, torch.float32) and "bf16" not in exact.name


def test_on_the_cpu_a_face_model_runs_in_plain_fp32_as_before(restoreformer):
    """The CPU's faces are those of fp32 without autocast, whether the precision is left to the pack or asked."""
    frames = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(3))
    pack = load_upscale_model(restoreformer)
    assert "bf16" not in pack.name
    assert torch.equal(pack(frames), load_upscale_model(restoreformer, dtype=torch.float32)(frames))


def test_restored_clip_is_512_and_strength_0_is_the_plain_resize_then_upscaled(scene):
    renderer, picture, portrait, latents = scene
    plain = np.concatenate(list(VideoWrite(VideoRender(renderer, portrait, latents[:2])).pieces()))
    frames = torch.from_numpy(plain).permute(0, 3, 1, 2).float() / 255
    resize = FaceRestorer(Recorder(), 512, RestoreOptions(strength=0))
    clip = VideoRender(renderer, portrait, latents[:2], restorer=resize).check()
    assert clip.size == (512, 512)
    resized = np.concatenate(list(VideoWrite(clip).pieces()))
    assert resized.shape == (2, 512, 512, 3)
    assert int(np.abs(resized.astype(int) - u8(bicubic(frames)).astype(int)).max()) <= 1
    net = Recorder()
    nearest = Upscaler(lambda x: F.interpolate(x, scale_factor=2, mode="nearest"), scale=2)
    both = VideoRender(renderer, portrait, latents[:2], restorer=FaceRestorer(net, 512), upscaler=nearest).check()
    assert both.size == (1024, 1024)
    sharp = np.concatenate(list(VideoWrite(both).pieces()))
    assert sharp.shape == (2, 1024, 1024, 3) and net.frames == 2
    assert net.inputs[0][0].shape[-1] == 512  # restored first, then upscaled
    assert np.abs(sharp[:, ::2, ::2].astype(int) - resized.astype(int)).mean() > 10


def test_pasted_restored_heads_keep_the_picture_outside_the_box_and_match_colours_on_the_restored_face(
        scene, monkeypatch):
    renderer, picture, portrait, latents = scene
    references = []
    real = Compositor.match_colors
    monkeypatch.setattr(Compositor, "match_colors", lambda self, ref: references.append(ref) or real(self, ref))
    net = Recorder()
    clip = VideoRender(renderer, portrait, latents[:3], original=picture, restorer=FaceRestorer(net, 512),
                       batch_size=3).check()
    pasted = np.concatenate(list(VideoWrite(clip).pieces()))
    assert pasted.shape == (3, 612, 512, 3)
    box = portrait.crop
    outside = np.ones((612, 512), bool)
    outside[max(box.y0, 0):box.y1, max(box.x0, 0):box.x1] = False
    original = (picture * 255).round().to(torch.uint8).numpy()
    assert np.array_equal(pasted[:, outside], np.broadcast_to(original[outside], pasted[:, outside].shape))
    assert len(references) == 1 and references[0].shape == (3, 512, 512)  # the first frame, restored alone
    assert net.frames == 3 + 1


def test_streaming_memory_is_one_batch_for_a_clip_three_times_longer(scene):
    renderer, picture, portrait, latents = scene

    def peak(frames: int) -> int:
        clip = VideoRender(renderer, portrait, latents[:frames], original=picture,
                           restorer=FaceRestorer(lambda x, w: x.flip(-1), 512), batch_size=2).check()
        return measure(lambda: sum(len(p) for p in VideoWrite(clip).pieces()), CPU).host_bytes

    short, long = peak(2), peak(6)
    assert short > 2 * 512 * 512 * 3 * 4  # the restored batch is counted
    assert long <= short + 2**20, (short, long)


def test_the_estimate_names_the_restore_and_the_run_goes_on_from_its_warm_up(scene, tmp_path, monkeypatch):
    import anitalker_core.stages.video as video_stage
    from anitalker_core.video.writers import Mp4Writer

    renderer, picture, portrait, latents = scene
    monkeypatch.setattr(video_stage, "WARMUP_FRAMES", 2)  # a warm-up of two of the four frames
    net = Recorder()
    stage = VideoWrite(VideoRender(renderer, portrait, latents[:4], original=picture,
                                   restorer=FaceRestorer(net, 512), batch_size=1).check())
    step = stage.estimate()
    assert [p.name for p in step.parts] == ["rendering", "face restore and paste back", "encoding"]
    assert net.frames == 2 and any("face restore" in n.what for n in step.host)
    stage.run([Mp4Writer(tmp_path / "clip.mp4")])
    assert net.frames == 4  # frame 0 alone is also the colour reference; nothing restored twice


def test_the_image_stage_restores_in_chunks_with_progress_and_stops_on_cancel(scene):
    net = Recorder()
    images = torch.rand(5, 256, 256, 3)
    stage = FaceRestoreImages(FaceRestorer(net, 512, batch=2), images, CPU)
    step = stage.estimate()
    assert step.parts[0].name == "face restore" and net.frames == 4  # two chunks, kept for the run
    says(" ".join(n.what for n in step.host), "IMAGE output of 5 faces at 512x512")
    seen = []
    faces = stage.run(lambda done, total: seen.append((done, total)))
    assert faces.shape == (5, 512, 512, 3) and net.frames == 5 and seen == [(2, 5), (4, 5), (5, 5)]
    assert torch.allclose(faces[4], FaceRestorer(Recorder(), 512)(images[4:].permute(0, 3, 1, 2))[0].permute(1, 2, 0))

    def cancel(done, total):
        raise Interrupted("cancelled")

    net = Recorder()
    stage = FaceRestoreImages(FaceRestorer(net, 512, batch=2), images, CPU)
    with pytest.raises(Interrupted):
        stage.run(cancel)
    assert net.frames == 2
    with pytest.raises(AniTalkerError):
        FaceRestoreImages(FaceRestorer(net, 512), torch.rand(2, 256, 300, 3), CPU)


class FlatteningProbe(AutocastProbe):
    """A stand-in face network that flattens its input with ``.view``, as GFPGAN does with its features."""

    def forward(self, x, **kwargs):
        return x.view(x.shape[0], -1).view_as(x) * self.weight


def test_frames_that_arrive_channels_last_reach_the_network_in_its_plain_layout():
    """An IMAGE's frames are channels-last once permuted to (n,3,h,w); a network that flattens with ``.view`` (GFPGAN)
    fails on that layout unless it is given contiguous input, as its authors feed it."""
    from anitalker_core.image.face_restore import face_restorer

    descriptor = probe_descriptor()
    descriptor.model = FlatteningProbe()
    image = torch.rand(2, 512, 512, 3)  # IMAGE (n,h,w,c), at the model's side: no resize in between
    faces = image.permute(0, 3, 1, 2)
    assert not faces.is_contiguous()
    with pytest.raises(RuntimeError, match="view"):
        descriptor.model(faces)
    restored = face_restorer(descriptor, CPU)(faces)
    assert torch.allclose(restored, faces.clamp(0, 1), atol=1e-6)
