"""The example workflows: in sync with their definition, made of registered nodes, stating only what differs from
the nodes' defaults, laid out to be read.

Layout checks run on the committed UI files, the way an artist opens them: nodes do not overlap (Load Image,
Load Video and Load Audio counted with their previews), stages are titled groups, a note explains the graph,
wires run left to right and the opening view shows everything at 70 % zoom or more in a 1600x1000 window, in view
in both frontends the browser test opens it with.
"""

from __future__ import annotations

import copy
import json
from itertools import combinations
from pathlib import Path

import pytest
from tests.support.golden import REPO
from tests.support.node_specs import load_build

UI = sorted((REPO / "workflows" / "ui").glob("*.json"))
TITLE_H = 30
PREVIEW_BODY = {"LoadImage": 102 + 200, "LoadVideo": 82 + 200, "LoadAudio": 136}  # widgets + a 200 px preview
OPENING_SCALE = 0.7  # smaller, the editor draws nodes without their text
CANVAS = (1536, 922)
"""The graph canvas of a 1600x1000 window in frontend 1.27 (ComfyUI 0.3.64's), right of its side bar and under its
top bars; a saved view (scale, offset) maps canvas point p to (p + offset) * scale in it."""
NEWER_CANVAS = (56, 88, 1600, 1000)
"""What frontend 1.58 shows unobstructed of its canvas, which fills the window (left, top, right, bottom): right of
its side bar, under its tab bar and the buttons floating below it. The same view lands 64 px further left and 78 px
higher there than in 1.27."""
NOTES = ("Note", "MarkdownNote")


@pytest.fixture(scope="module")
def build():
    return load_build()


@pytest.fixture(scope="module")
def defs(build):
    return build.definitions


@pytest.fixture(scope="module")
def layout(build):
    return build.layout


def rect(node: dict) -> tuple[float, float, float, float]:
    """x0, y0, x1, y1 of a node with its title bar, tall enough for its preview."""
    (x, y), (w, h) = node["pos"], node["size"]
    h = max(h, PREVIEW_BODY.get(node["type"], 0))
    return x, y - TITLE_H, x + w, y + h


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def inside(inner, outer) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def left_to_right(ui: dict) -> float:
    """Share of links that leave a node's right edge towards a node further right."""
    nodes = {n["id"]: rect(n) for n in ui["nodes"]}
    return sum(nodes[dst][0] >= nodes[src][2] for _, src, _, dst, _, _ in ui["links"]) / len(ui["links"])


def test_committed_files_match_their_definition(build, defs):
    files = build.render_all()
    for path, text in files.items():
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run python workflows/build.py"
    for folder in ("workflows/api", "workflows/ui", "example_workflows"):
        extra = set((REPO / folder).glob("*.json")) - set(files)
        assert not extra, f"{sorted(extra)} are not made by workflows/build.py: delete them or add them to WORKFLOWS"
    # ComfyUI lists every JSON directly in a pack's workflows/ (or example_workflows/) folder as a template
    assert not list((REPO / "workflows").glob("*.json"))
    for name, wf in defs.WORKFLOWS.items():  # the template is the UI graph under its title
        assert files[REPO / "example_workflows" / f"{wf.title}.json"] == files[REPO / "workflows" / "ui" / f"{name}.json"]


def test_node_spec_snapshot_matches_the_registered_schemas():
    from tests.support.node_specs import SNAPSHOT, node_specs, render

    assert SNAPSHOT.read_text(encoding="utf-8") == render(node_specs()), (
        "workflows/specs/node_specs.json is stale: run python -m tests.support.node_specs, then python workflows/build.py")


def test_workflows_use_registered_nodes_with_their_inputs_and_types(defs):
    from tests.support.comfy_pack import load_pack

    registered = {cls.define_schema().node_id: cls.define_schema() for cls in load_pack().nodes.NODES}
    specs = defs.SPECS
    for name, wf in defs.WORKFLOWS.items():
        graph = json.loads((REPO / "workflows" / "api" / f"{name}.json").read_text())
        for nid, node in graph.items():
            kind = node["class_type"]
            assert kind in registered or kind in defs.CORE, f"{name}: node {nid} is {kind}, which nothing registers"
            schema_inputs = ([i.id for i in registered[kind].inputs] if kind in registered
                             else [i["name"] for i in defs.CORE[kind]["inputs"]])
            assert set(node["inputs"]) <= set(schema_inputs), (name, nid, set(node["inputs"]) - set(schema_inputs))
            if kind in registered:  # every required input is given
                required = {i.id for i in registered[kind].inputs if not i.optional}
                assert required <= set(node["inputs"]), (name, nid, required - set(node["inputs"]))
            for input_name, value in node["inputs"].items():
                if isinstance(value, list):  # a link: the source slot exists and carries the input's type
                    source = graph[value[0]]["class_type"]
                    out_type = specs[source]["outputs"][value[1]][1]
                    in_type = next(i["type"] for i in specs[kind]["inputs"] if i["name"] == input_name)
                    assert out_type in in_type.split(",") or in_type == "*", (name, nid, input_name, out_type, in_type)


@pytest.mark.parametrize("path", UI, ids=[p.stem for p in UI])
def test_layout_reads_left_to_right_without_overlaps(path):
    ui = json.loads(path.read_text())
    nodes = [n for n in ui["nodes"] if n["type"] not in NOTES]
    notes = [n for n in ui["nodes"] if n["type"] in NOTES]
    assert len(notes) == 1 and "Change first" in notes[0]["widgets_values"][0]
    for a, b in combinations(ui["nodes"], 2):
        assert not overlap(rect(a), rect(b)), f"{a['type']} ({a['id']}) overlaps {b['type']} ({b['id']})"
    groups = [(g["title"], (g["bounding"][0], g["bounding"][1], g["bounding"][0] + g["bounding"][2],
                            g["bounding"][1] + g["bounding"][3])) for g in ui["groups"]]
    assert len(groups) >= 2 and all(title for title, _ in groups)
    for node in nodes:  # each node in exactly one stage group
        assert sum(inside(rect(node), box) for _, box in groups) == 1, node["type"]
    for (_, a), (_, b) in combinations(groups, 2):
        assert not overlap(a, b)
    assert not any(overlap(rect(notes[0]), box) for _, box in groups)
    assert left_to_right(ui) >= 0.9
    # the opening view shows the whole graph at 70 % or more: screen = (canvas + offset) * scale
    view = ui["extra"]["ds"]
    scale, (ox, oy) = view["scale"], view["offset"]
    assert OPENING_SCALE <= scale <= 1.0
    everything = [rect(n) for n in ui["nodes"]] + [box for _, box in groups]
    for x0, y0, x1, y1 in everything:
        left, top, right, bottom = (x0 + ox) * scale, (y0 + oy) * scale, (x1 + ox) * scale, (y1 + oy) * scale
        assert 0 <= left and right <= CANVAS[0] and 0 <= top and bottom <= CANVAS[1]
        newer_left, newer_top, newer_right, newer_bottom = NEWER_CANVAS
        assert newer_left <= left and right <= newer_right and newer_top <= top and bottom <= newer_bottom


def test_each_template_has_a_small_jpeg_thumbnail(defs):
    from PIL import Image

    for wf in defs.WORKFLOWS.values():
        thumb = REPO / "example_workflows" / f"{wf.title}.jpg"  # the name ComfyUI's template browser asks for
        assert thumb.is_file(), f"{thumb.name} is missing: run the browser test with ANITALKER_THUMBNAILS=1"
        assert thumb.stat().st_size < 100_000
        with Image.open(thumb) as im:
            assert im.format == "JPEG" and 200 <= im.width <= 800 and 150 <= im.height <= 800


def test_stages_come_from_the_table_then_the_menu_folder_then_the_links(defs, layout):
    specs = {**defs.SPECS,
             "AniTalkerNewEdit": {"display_name": "New Edit", "category": "AniTalker/edit", "inputs":
                                  [defs.socket("motion", "ANITALKER_MOTION")], "outputs": [["motion", "ANITALKER_MOTION"]]},
             "SomePackFilter": {"display_name": "Filter", "inputs": [defs.socket("image", "IMAGE")],
                                "outputs": [["IMAGE", "IMAGE"]]},
             "SomePackSource": {"display_name": "Source", "inputs": [], "outputs": [["IMAGE", "IMAGE"]]},
             "SomePackSink": {"display_name": "Sink", "inputs": [defs.socket("image", "IMAGE")], "outputs": []}}
    graph = {**defs.WORKFLOWS["anitalker_audio_hubert"].graph,
             "30": ("AniTalkerNewEdit", {"motion": ["8", 0]}),
             "31": ("SomePackFilter", {"image": ["9", 0]}),
             "32": ("SomePackSource", {}),
             "33": ("SomePackSink", {"image": ["31", 0]})}
    graph["9"] = ("AniTalkerRenderFrames", {**graph["9"][1], "motion": ["30", 0]})
    stage = {nid: layout.STAGES[i].key for nid, i in layout.stage_index(graph, specs).items()}
    assert stage["1"] == "inputs" and stage["3"] == "models" and stage["6"] == "prepare"  # by type
    assert stage["8"] == "motion" and stage["30"] == "edit" and stage["9"] == "render"  # by menu folder
    assert stage["31"] == "render" and stage["32"] == "inputs" and stage["33"] == "output"  # by links
    place = layout.columns(graph, layout.stage_index(graph, specs))
    assert place["31"] == (place["9"][0], place["9"][1] + 1)  # a node fed from its own stage: a column further right
    ui = layout.to_ui(defs.Workflow("t", "**Change first:** x", graph), specs)
    boxes = {n["id"]: rect(n) for n in ui["nodes"]}
    for a, b in combinations(boxes.values(), 2):
        assert not overlap(a, b)
    # four nodes more than the HuBERT workflow: too wide for 70 % by the plain rules, a denser variant opens it so
    plain = layout.arranged(defs.Workflow("t", "x", graph), specs, layout.stage_index(graph, specs), layout.Options())
    assert plain.view["scale"] < OPENING_SCALE <= ui["extra"]["ds"]["scale"]


def test_unknown_node_types_name_the_fix(defs, layout):
    with pytest.raises(KeyError, match="add it to CORE"):
        defs.node("NoSuchNode", {})
    with pytest.raises(KeyError, match="NoSuchNode"):
        layout.to_ui(defs.Workflow("t", "x", {"1": ("NoSuchNode", {})}), defs.SPECS)


def test_definitions_state_only_what_differs_from_the_defaults_in_the_specs(defs):
    """Every pack widget a definition leaves out holds the default node_specs.json records, and none it states
    repeats that default: a default has one home, the node's schema."""
    for name, wf in defs.WORKFLOWS.items():
        for nid, node in wf.graph.items():
            assert isinstance(node, defs.Node), f"{name}: node {nid} is not made by node()"
            for item in defs.SPECS[node.class_type]["inputs"]:
                fallback = defs.widget_default(item) if item["widget"] else defs.NO_DEFAULT
                if fallback is defs.NO_DEFAULT:  # sockets, and core widgets (stated in full)
                    continue
                value, where = node.inputs[item["name"]], f"{name}: node {nid} ({node.class_type}) {item['name']}"
                if item["name"] in node.stated:
                    assert value != fallback, f"{where} restates the node's default {value!r}: leave it out"
                else:
                    assert value == fallback, f"{where} is {value!r}, not the default {fallback!r} in the specs"


def test_a_stated_default_is_refused_and_a_changed_default_reaches_the_workflows(defs, monkeypatch):
    feather = defs.default("AniTalkerPasteBack", "feather")
    with pytest.raises(ValueError, match=f"feather={feather!r} is the node's default"):
        defs.node("AniTalkerPasteBack", {"feather": feather})
    assert defs.default("AniTalkerLoadAudioEncoder", "encoder").startswith("mfcc")  # a combo's first option
    specs = copy.deepcopy(defs.SPECS)
    next(i for i in specs["AniTalkerPasteBack"]["inputs"] if i["name"] == "feather")["default"] = 0.25
    monkeypatch.setattr(defs, "SPECS", specs)
    assert defs.node("AniTalkerPasteBack", {}).inputs["feather"] == 0.25
    with pytest.raises(ValueError, match="the widget filename_prefix has no default"):
        defs.node("SaveVideo", {"format": "mp4", "codec": "h264"})


def snapshot(paths: list[Path]) -> dict[Path, bytes | None]:
    return {p: p.read_bytes() if p.exists() else None for p in paths}


def test_a_failure_while_building_writes_nothing(build, tmp_path, monkeypatch):
    monkeypatch.setattr(build, "ROOT", tmp_path)
    build.main()  # a first, complete set of files
    before = snapshot(list(tmp_path.rglob("*.json")))
    assert len(before) == 3 * len(build.definitions.WORKFLOWS)
    real_to_ui, calls = build.layout.to_ui, []

    def breaks_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("broken definition")
        return real_to_ui(*args, **kwargs)

    monkeypatch.setattr(build.layout, "to_ui", breaks_on_the_third)
    monkeypatch.setitem(build.definitions.WORKFLOWS["anitalker_audio_hubert"].graph, "9",
                        ("AniTalkerRenderFrames", {"renderer": ["3", 0], "portrait": ["6", 0], "motion": ["8", 0],
                                                   "batch_size": 4, "take": 0}))
    with pytest.raises(RuntimeError, match="broken definition"):
        build.main()
    assert snapshot(list(before)) == before


def test_a_failure_half_way_through_writing_leaves_every_file_unchanged(build, tmp_path, monkeypatch):
    old = {tmp_path / f"{i}.json": f"old {i}\n" for i in range(6)}
    for path, text in old.items():
        path.write_text(text)
    real_fdopen, opened = build.os.fdopen, []

    def disk_full_on_the_fourth(*args, **kwargs):
        opened.append(1)
        if len(opened) == 4:
            raise OSError(28, "No space left on device")
        return real_fdopen(*args, **kwargs)

    monkeypatch.setattr(build.os, "fdopen", disk_full_on_the_fourth)
    with pytest.raises(OSError, match="No space left"):
        build.write_all({path: "new\n" for path in old})
    assert {p: p.read_text() for p in old} == old
    assert sorted(tmp_path.iterdir()) == sorted(old)  # no temporary files left behind
    monkeypatch.setattr(build.os, "fdopen", real_fdopen)
    build.write_all({path: "new\n" for path in old})
    assert all(p.read_text() == "new\n" for p in old) and sorted(tmp_path.iterdir()) == sorted(old)
