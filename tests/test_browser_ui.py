"""The example workflows in the real ComfyUI web UI, in a headless Chromium at 1600x1000.

Runs only when COMFYUI_DIR points at a ComfyUI checkout and playwright plus Debian's chromium are installed
(playwright cannot download a browser here; it is launched with the system one). It loads every
workflows/ui/*.json through the app, checks that no node type is missing, that nothing was squeezed or moved
and that the opening view is 70 % or more, runs a short graph and checks that the pack's web extension shows the
nodes' messages and Load Portrait previews its face crop, and that the template browser finds each template and
its thumbnail. Page errors coming from the pack fail the tests (the frontend's own start-up noise offline does not).

Screenshots are kept in ANITALKER_ARTIFACTS (default: a pytest temporary folder, printed at the end).
ANITALKER_THUMBNAILS=1 also writes each template's thumbnail, example_workflows/<title>.jpg, from its screenshot.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from tests.support.comfy_server import COMFYUI_DIR, PACK_FOLDER, get, make_base, mfcc_frames, running_server
from tests.support.golden import FIXTURES, REPO
from tests.test_workflows import OPENING_SCALE
from tests.support.node_specs import SNAPSHOT, load_build, widget_slots

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(not COMFYUI_DIR, reason="set COMFYUI_DIR to a ComfyUI checkout to run the browser test"),
    pytest.mark.skipif(not CHROMIUM, reason="the browser test needs Debian's chromium: apt-get install chromium"),
]
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the browser test needs playwright: pip install playwright (never playwright install)")

UI = sorted((REPO / "workflows" / "ui").glob("*.json"))
FIRST_RELEASE_UI = sorted((FIXTURES / "workflows" / "0.1.0" / "ui").glob("*.json"))
WINDOW = {"width": 1600, "height": 1000}
PACK_SCRIPT = f"/extensions/{PACK_FOLDER}/"


@pytest.fixture(scope="module")
def server(tmp_path_factory, checkpoints):
    base = tmp_path_factory.mktemp("comfy_ui_base")
    samples = make_base(base, stage2=("mfcc_full_control",), hubert=False, checkpoints=checkpoints)
    with running_server(base, samples) as running:
        yield running


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    folder = Path(os.environ.get("ANITALKER_ARTIFACTS") or tmp_path_factory.mktemp("browser_artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    print(f"\nbrowser screenshots: {folder}")


@pytest.fixture(scope="module")
def ui(server):
    """The app in a page, plus the problems the pack causes there (page errors, console errors, failed loads)."""
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport=WINDOW)
        page.on("pageerror", lambda e: PACK_SCRIPT in (e.stack or "") and problems.append(f"page error: {e}"))
        page.on("console", lambda m: m.type == "error" and "anitalker" in m.text.lower()
                and problems.append(f"console: {m.text}"))
        page.on("response", lambda r: r.status >= 400 and PACK_FOLDER in urllib.parse.unquote(r.url)
                and problems.append(f"HTTP {r.status}: {r.url}"))
        page.goto(server.url)
        page.wait_for_function("window.app && window.app.graph && window.app.canvas", timeout=120_000)
        page.wait_for_function("window.app.extensions.some(e => e.name === 'AniTalker.NodeMessages')", timeout=30_000)
        yield page, problems
        browser.close()


def load(page, workflow: dict) -> None:
    page.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", workflow)
    page.wait_for_timeout(800)
    page.keyboard.press("Escape")  # a dialog about a missing model file would hide the graph


def test_the_core_node_table_matches_the_server(server):
    build = load_build()
    for kind, spec in build.definitions.CORE.items():
        info = get(server.url, f"/object_info/{kind}")[kind]
        order = info["input_order"]
        assert [i["name"] for i in spec["inputs"]] == order.get("required", []) + order.get("optional", []), kind
        assert [o[1] for o in spec["outputs"]] == info["output"], kind


@pytest.mark.parametrize("path", UI, ids=[p.stem for p in UI])
def test_each_workflow_opens_complete_readable_and_as_laid_out(ui, artifacts, path):
    page, problems = ui
    workflow = json.loads(path.read_text())
    load(page, workflow)
    missing = page.evaluate("(types) => types.filter(t => !(t in LiteGraph.registered_node_types))",
                            sorted({n["type"] for n in workflow["nodes"]}))
    assert not missing, f"missing node types: {missing}"
    state = page.evaluate("""() => ({scale: app.canvas.ds.scale, nodes: app.graph.nodes.map(n =>
        ({id: n.id, pos: [...n.pos], size: [...n.size]})), groups: app.graph.groups.length})""")
    assert state["scale"] >= OPENING_SCALE.get(path.stem, 0.7) and len(state["nodes"]) == len(workflow["nodes"])
    assert state["groups"] == len(workflow["groups"])
    saved = {n["id"]: n for n in workflow["nodes"]}
    for node in state["nodes"]:  # the editor neither grew a node (its minimum size) nor moved it
        assert [round(v) for v in node["size"]] == [round(v) for v in saved[node["id"]]["size"]], saved[node["id"]]["type"]
        assert [round(v) for v in node["pos"]] == [round(v) for v in saved[node["id"]]["pos"]]
    page.screenshot(path=str(artifacts / f"{path.stem}.png"))
    if os.environ.get("ANITALKER_THUMBNAILS") == "1":
        write_thumbnail(page, load_build().definitions.WORKFLOWS[path.stem].title)
    assert not problems


@pytest.mark.parametrize("path", FIRST_RELEASE_UI, ids=[p.stem for p in FIRST_RELEASE_UI])
def test_a_first_release_ui_graph_opens_with_each_value_on_its_widget(ui, path):
    """The editor assigns saved widget values by position: each lands on the widget it was saved for, and a
    widget added since shows its default, which keeps the first release's behaviour (Paste Back: a square)."""
    page, problems = ui
    workflow = json.loads(path.read_text())
    load(page, workflow)
    then = json.loads((path.parents[1] / "node_specs.json").read_text())
    now = json.loads(SNAPSHOT.read_text())
    shown = page.evaluate("() => Object.fromEntries(app.graph.nodes.map(n => [n.id, Object.fromEntries("
                          "(n.widgets ?? []).map(w => [w.name, w.value]))]))")
    for node in workflow["nodes"]:
        if not node["type"].startswith("AniTalker"):
            continue
        slots = widget_slots(then[node["type"]]["inputs"])
        saved = dict(zip([slot["name"] for slot in slots], node["widgets_values"]))
        widgets = shown[str(node["id"])]
        for item in now[node["type"]]["inputs"]:
            if item["widget"]:
                expected = saved.get(item["name"], item.get("default"))
                expected = pytest.approx(expected) if isinstance(expected, float) else expected
                assert widgets[item["name"]] == expected, (path.stem, node["type"], item["name"])
    assert not problems


def write_thumbnail(page, title: str) -> None:
    """The graph as it opens, without the overlays (minimap, zoom buttons, canvas info), 480 px wide."""
    from io import BytesIO

    from PIL import Image

    overlays = ("Comfy.Minimap.Visible", "Comfy.Graph.CanvasInfo", "Comfy.Graph.CanvasMenu")
    page.evaluate("async (ids) => { for (const id of ids) await app.extensionManager.setting.set(id, false); }", overlays)
    page.wait_for_timeout(500)
    box = page.evaluate("""() => { const ds = app.canvas.ds, r = app.canvasEl.getBoundingClientRect();
        const xs = [], ys = [];
        for (const n of app.graph.nodes) { xs.push(n.pos[0], n.pos[0] + n.size[0]); ys.push(n.pos[1] - 30, n.pos[1] + n.size[1]); }
        for (const g of app.graph.groups) { xs.push(g.pos[0], g.pos[0] + g.size[0]); ys.push(g.pos[1], g.pos[1] + g.size[1]); }
        const sx = v => r.left + (v + ds.offset[0]) * ds.scale, sy = v => r.top + (v + ds.offset[1]) * ds.scale;
        return {x: sx(Math.min(...xs)) - 8, y: sy(Math.min(...ys)) - 8,
                width: (Math.max(...xs) - Math.min(...xs)) * ds.scale + 16,
                height: (Math.max(...ys) - Math.min(...ys)) * ds.scale + 16}; }""")
    png = page.screenshot(clip=box)
    page.evaluate("async (ids) => { for (const id of ids) await app.extensionManager.setting.set(id, true); }", overlays)
    image = Image.open(BytesIO(png)).convert("RGB")
    image = image.resize((480, round(480 * image.height / image.width)), Image.LANCZOS)
    image.save(REPO / "example_workflows" / f"{title}.jpg", quality=80, optimize=True)


def test_node_messages_and_the_face_crop_show_on_the_nodes_after_a_run(ui, server, artifacts):
    page, problems = ui
    build = load_build()
    graph = {
        "1": ("LoadImage", {"image": "monalisa.jpg"}),
        "2": ("LoadAudio", {"audio": "statue.wav"}),
        "3": ("AniTalkerLoadRenderer", {"ckpt_name": "stage1.ckpt", "device": "cpu", "precision": "fp32"}),
        "5": ("AniTalkerLoadAudioEncoder", {"encoder": "mfcc (built in, no download)", "device": "cpu"}),
        "6": ("AniTalkerLoadPortrait", {"image": ["1", 0], "renderer": ["3", 0], "crop_mode": "auto",
                                        "margin": 0.65, "box_x": 0, "box_y": 0, "box_size": 512}),
        "7": ("AniTalkerAudioEncode", {"audio": ["2", 0], "audio_encoder": ["5", 0]}),
        "10": ("AniTalkerVarianceControl", {"yaw": 0.0, "pitch": 0.0, "roll": 0.0, "face_location": 0.5,
                                            "face_scale": 0.5, "keyframes": "0: yaw=-15\n1s: yaw=15"}),
        "30": ("PreviewAny", {"source": ["6", 2]}),
        "31": ("PreviewAny", {"source": ["7", 2]}),
        "32": ("PreviewAny", {"source": ["10", 1]}),
    }
    workflow = build.definitions.Workflow("messages", "**Change first:** nothing", graph)
    load(page, build.layout.to_ui(workflow, build.definitions.SPECS))
    page.evaluate("() => window.app.queuePrompt(0)")
    info = "(id) => app.graph.getNodeById(id).widgets?.find(w => w.name === 'anitalker_info')?.value ?? ''"
    page.wait_for_function(f"() => ({info})(7) && ({info})(10) && ({info})(6)", timeout=180_000)
    page.wait_for_timeout(1500)
    assert f"2.00 s of audio -> {mfcc_frames(server.samples)} frames" in page.evaluate(info, 7)
    assert "keyframes drive yaw" in page.evaluate(info, 10)
    assert page.evaluate(info, 6)  # the crop note (or that the face was found)
    previews = page.evaluate("() => (app.nodeOutputs?.['6']?.images ?? []).length")
    assert previews == 1  # the face crop, shown on Load Portrait
    labels = page.evaluate("() => app.graph.getNodeById(10).widgets.map(w => w.label ?? w.name)")
    assert "keyframes" in labels
    page.screenshot(path=str(artifacts / "node_messages_after_run.png"))
    assert not problems


def test_the_template_browser_lists_each_template_with_its_thumbnail(ui, server, artifacts):
    page, problems = ui
    build = load_build()
    listed = get(server.url, "/api/workflow_templates")[PACK_FOLDER]
    assert sorted(listed) == sorted(wf.title for wf in build.definitions.WORKFLOWS.values())
    for title in listed:
        for suffix, kind in ((".json", "application/json"), (".jpg", "image/jpeg")):
            url = f"{server.url}/api/workflow_templates/{PACK_FOLDER}/{urllib.parse.quote(title + suffix)}"
            with urllib.request.urlopen(url, timeout=30) as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith(kind), (title, suffix)
    page.keyboard.press("Escape")  # a first start opens the template browser by itself; start from a closed one
    page.wait_for_timeout(500)
    page.get_by_text("Templates", exact=True).first.click()
    page.get_by_text(PACK_FOLDER, exact=True).first.click()
    page.wait_for_timeout(2500)
    page.screenshot(path=str(artifacts / "template_browser.png"))
    cards = []
    for title in listed:  # a card below the fold loads its picture once scrolled into view
        page.locator(f'[data-testid="template-workflow-{title}"]').first.scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        cards.append(page.evaluate("""(t) => [...document.querySelectorAll('[data-testid^="template-workflow-"]')]
            .filter(card => card.dataset.testid === `template-workflow-${t}`)
            .map(card => [...card.querySelectorAll('img')].some(img => img.complete && img.naturalWidth > 0))""",
            title))
    assert cards == [[True]] * len(listed), dict(zip(listed, cards))  # one card each, with its picture loaded
    page.keyboard.press("Escape")
    assert not problems
