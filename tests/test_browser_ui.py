"""The example workflows in the real ComfyUI web UI, in a headless Chromium at 1600x1000.

Runs only when COMFYUI_DIR points at a ComfyUI checkout and playwright plus Debian's chromium are installed
(playwright cannot download a browser here; it is launched with the system one). Every test runs against the
frontend the checkout pins and, when ANITALKER_FRONTEND_ROOT names another frontend's static folder (the newest
comfyui-frontend-package from PyPI: .../comfyui_frontend_package/static), against that one too, served by the same
ComfyUI with --front-end-root. The server starts with an empty input folder, as on a fresh install.

It loads every workflows/ui/*.json through the app and checks that no node type is missing, that no input file is
missing (the pack copied the samples at start-up), that nothing was squeezed or moved, and that the opening view is
70 % or more with every node and group in view (nothing but the closable minimap over it); it opens the first
release's graphs; runs a short graph and checks that the pack's web extension shows the nodes' messages and Load
Portrait previews its face crop; opens a node's help page in the help panel; switches the frontend to Chinese and
checks the nodes' Chinese names, labels and help page; and checks that the template browser finds each template and
its thumbnail. Page errors coming from the pack fail the tests (the frontend's own start-up noise offline does not).

Screenshots are kept in ANITALKER_ARTIFACTS (default: a pytest temporary folder, printed at the end).
ANITALKER_THUMBNAILS=1 also writes each template's thumbnail, example_workflows/<title>.jpg, from its screenshot in
the pinned frontend.
"""

from __future__ import annotations

import json
import os
import re
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
NEWEST_FRONTEND = os.environ.get("ANITALKER_FRONTEND_ROOT")
FRONTENDS = ["pinned"] + (["newest"] if NEWEST_FRONTEND else [])
INPUT_FILES = {"LoadImage": "image", "LoadAudio": "audio", "LoadVideo": "file"}
LOCALE_PROBE = re.compile(r"/docs/AniTalker\w+/[\w-]+\.md$")
"""The help panel asks for docs/<NodeId>/<locale>.md first, then docs/<NodeId>.md: a 404 for a language without
a page of its own is the frontend's probe, not a fault."""


def weights_by_name(base: Path) -> None:
    """Empty files under the names of the weights the templates pick that the base lacks: the editor lists them as
    it lists the files a user downloaded, so the templates open as they do for that user (the browser test runs none
    of the graphs that would load them)."""
    defs = load_build().definitions
    models = base / "models"
    for path in (models / "anitalker" / defs.default("AniTalkerLoadMotionGenerator", "ckpt_name"),
                 models / "anitalker" / defs.HUBERT_ENCODER / "config.json",
                 models / "upscale_models" / defs.UPSCALER, models / "upscale_models" / defs.FACE_MODEL):
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_bytes(b"")


@pytest.fixture(scope="module", params=FRONTENDS)
def server(request, tmp_path_factory, checkpoints):
    base = tmp_path_factory.mktemp(f"comfy_ui_base_{request.param}")
    samples = make_base(base, checkpoints, stage2=("mfcc_full_control",), hubert=False, inputs=False)
    weights_by_name(base)
    root = NEWEST_FRONTEND if request.param == "newest" else None
    with running_server(base, samples, front_end_root=root) as running:
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
                and not (r.status == 404 and LOCALE_PROBE.search(r.url))
                and problems.append(f"HTTP {r.status}: {r.url}"))
        page.goto(server.url)
        ready(page)
        yield page, problems
        browser.close()


@pytest.fixture
def frontend(request, server) -> str:
    """Which frontend serves this test's page: "pinned" or "newest"."""
    return request.node.callspec.params["server"]


def ready(page) -> None:
    """The app up with the pack's extension, no dialog open."""
    page.wait_for_function("window.app && window.app.graph && window.app.canvas", timeout=120_000)
    page.wait_for_function("window.app.extensions.some(e => e.name === 'AniTalker.NodeMessages')", timeout=30_000)
    page.wait_for_timeout(2000)  # a first start opens the template browser by itself
    close_dialogs(page)


def language(page, locale: str) -> None:
    """The frontend's language, as a user sets it; the page reloads, since newer frontends name the nodes they
    registered at start-up only."""
    page.evaluate("async (locale) => { await app.extensionManager.setting.set('Comfy.Locale', locale); }", locale)
    page.reload()
    ready(page)


def close_dialogs(page) -> None:
    """Closes what a dialog would hide the graph behind (the template browser, a missing model file)."""
    for _ in range(3):
        if not page.evaluate("() => [...document.querySelectorAll('.p-dialog-mask, [role=dialog]')]"
                             ".some(d => d.getBoundingClientRect().width > 0)"):
            return
        page.keyboard.press("Escape")
        page.wait_for_timeout(500)


def load(page, workflow: dict) -> None:
    page.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", workflow)
    page.wait_for_timeout(800)
    close_dialogs(page)


def test_the_core_node_table_matches_the_server(server):
    build = load_build()
    for kind, spec in build.definitions.CORE.items():
        info = get(server.url, f"/object_info/{kind}")[kind]
        order = info["input_order"]
        assert [i["name"] for i in spec["inputs"]] == order.get("required", []) + order.get("optional", []), kind
        assert [o[1] for o in spec["outputs"]] == info["output"], kind


IN_VIEW = """() => {
    // Every node (title bar included) and group: its corners inside the window, on the canvas, under nothing but
    // the minimap (a corner overlay the user can close).
    const ds = app.canvas.ds, r = app.canvasEl.getBoundingClientRect(), hidden = [];
    const cover = (x, y) => { if (x < 0 || y < 0 || x >= innerWidth || y >= innerHeight) return "the window's edge";
        let el = document.elementFromPoint(x, y);
        const top = `${el?.tagName}.${el?.className}`;
        if (el === app.canvasEl) return null;
        for (; el; el = el.parentElement) if (/minimap/i.test(`${el.className} ${el.id}`)) return null;
        return top; };
    const boxes = app.graph.nodes.map(n => [n.title, n.pos[0], n.pos[1] - 30, n.size[0], n.size[1] + 30])
        .concat(app.graph.groups.map(g => [g.title, g.pos[0], g.pos[1], g.size[0], g.size[1]]));
    for (const [title, x, y, w, h] of boxes) {
        const x0 = r.left + (x + ds.offset[0]) * ds.scale + 2, y0 = r.top + (y + ds.offset[1]) * ds.scale + 2;
        const x1 = x0 + w * ds.scale - 4, y1 = y0 + h * ds.scale - 4;
        const covers = [[x0, y0], [x1, y0], [x0, y1], [x1, y1]].map(([px, py]) => cover(px, py)).filter(c => c);
        if (covers.length) hidden.push(`${title} (under ${covers[0]})`);
    }
    return hidden; }"""
MISSING_INPUTS = """(loaders) => app.graph.nodes.filter(n => n.type in loaders).map(n => {
    const w = n.widgets.find(w => w.name === loaders[n.type]);
    return [n.type, w.value, (w.options?.values ?? []).includes(w.value)]; }).filter(([, , found]) => !found)"""


@pytest.mark.parametrize("path", UI, ids=[p.stem for p in UI])
def test_each_workflow_opens_complete_readable_and_as_laid_out(ui, artifacts, frontend, path):
    page, problems = ui
    workflow = json.loads(path.read_text())
    load(page, workflow)
    missing = page.evaluate("(types) => types.filter(t => !(t in LiteGraph.registered_node_types))",
                            sorted({n["type"] for n in workflow["nodes"]}))
    assert not missing, f"missing node types: {missing}"
    # a fresh install runs it: the input files are there (the pack copied them), and the frontend flags nothing
    assert page.evaluate(MISSING_INPUTS, INPUT_FILES) == []
    assert page.evaluate("() => app.graph.nodes.filter(n => n.has_errors).map(n => n.type)") == []
    assert "issues found" not in page.evaluate("() => document.body.innerText")
    assert page.evaluate(IN_VIEW) == [], "nodes or groups out of view"
    state = page.evaluate("""() => ({scale: app.canvas.ds.scale, nodes: app.graph.nodes.map(n =>
        ({id: n.id, pos: [...n.pos], size: [...n.size]})), groups: app.graph.groups.length})""")
    assert state["scale"] >= OPENING_SCALE and len(state["nodes"]) == len(workflow["nodes"])
    assert state["groups"] == len(workflow["groups"])
    saved = {str(n["id"]): n for n in workflow["nodes"]}  # newer frontends keep ids as strings
    for node in state["nodes"]:  # the editor neither grew a node (its minimum size) nor moved it
        was = saved[str(node["id"])]
        assert [round(v) for v in node["size"]] == [round(v) for v in was["size"]], was["type"]
        assert [round(v) for v in node["pos"]] == [round(v) for v in was["pos"]]
    page.screenshot(path=str(artifacts / f"{frontend}_{path.stem}.png"))
    if os.environ.get("ANITALKER_THUMBNAILS") == "1" and frontend == "pinned":
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


def test_node_messages_and_the_face_crop_show_on_the_nodes_after_a_run(ui, server, artifacts, frontend):
    page, problems = ui
    build = load_build()
    graph = {  # the samples the pack copied into the empty input folder at start-up
        "1": ("LoadImage", {"image": "anitalker_monalisa.jpg"}),
        "2": ("LoadAudio", {"audio": "anitalker_statue.wav"}),
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
    assert f"{server.samples / 16000:.2f} s of audio -> {mfcc_frames(server.samples)} frames" in page.evaluate(info, 7)
    assert "keyframes drive yaw" in page.evaluate(info, 10)
    assert page.evaluate(info, 6)  # the crop note (or that the face was found)
    previews = page.evaluate("() => (app.nodeOutputs?.['6']?.images ?? []).length")
    assert previews == 1  # the face crop, shown on Load Portrait
    labels = page.evaluate("() => app.graph.getNodeById(10).widgets.map(w => w.label ?? w.name)")
    assert "keyframes" in labels
    page.screenshot(path=str(artifacts / f"{frontend}_node_messages_after_run.png"))
    assert not problems


HELP = """() => { const page = document.querySelector('.node-help-content');
    return page ? {headings: [...page.querySelectorAll('h1, h2')].map(h => h.textContent.trim()),
                   pictures: [...page.querySelectorAll('img')].map(img => img.complete && img.naturalWidth > 0)}
                : null; }"""


def open_help(page, node_id: int) -> dict:
    """Selects the node by its title bar and presses the selection toolbox's info button: the help panel opens."""
    page.keyboard.press("Escape")
    x, y = page.evaluate("""(id) => { const n = app.graph.getNodeById(id), ds = app.canvas.ds,
        r = app.canvasEl.getBoundingClientRect();
        return [r.left + (n.pos[0] + 40 + ds.offset[0]) * ds.scale,
                r.top + (n.pos[1] - 15 + ds.offset[1]) * ds.scale]; }""", node_id)
    page.mouse.click(x, y)
    page.locator('[data-testid="info-button"]').first.click()
    page.wait_for_function(f"() => ({HELP})()?.headings.length > 2", timeout=30_000)
    page.wait_for_timeout(800)  # its pictures
    return page.evaluate(HELP)


def test_the_help_panel_shows_a_nodes_page(ui, artifacts, frontend):
    """Load Portrait's page, from web/docs/AniTalkerLoadPortrait.md: its sections, its tables, its picture."""
    page, problems = ui
    load(page, json.loads((REPO / "workflows" / "ui" / "anitalker_audio_hubert.json").read_text()))
    shown = open_help(page, 6)  # Load Portrait
    assert shown["headings"] == ["Load Portrait", "When to use it", "Example", "Pitfalls", "Inputs", "Outputs"]
    assert shown["pictures"] == [True]
    page.screenshot(path=str(artifacts / f"{frontend}_help_panel.png"))
    page.keyboard.press("Escape")
    assert not problems


def test_in_chinese_the_nodes_show_their_chinese_names_labels_and_help(ui, server, artifacts, frontend):
    """With the frontend's language set to Chinese (Comfy.Locale zh), a template's pack nodes are titled with
    locales/zh/nodeDefs.json's names, their widgets carry its input names, and the help panel shows the Chinese
    page. The server serves the translations through its own loader (GET /i18n)."""
    page, problems = ui
    chinese = json.loads((REPO / "locales" / "zh" / "nodeDefs.json").read_text(encoding="utf-8"))
    served = get(server.url, "/i18n")["zh"]["nodeDefs"]
    assert {k: v for k, v in served.items() if k.startswith("AniTalker")} == chinese
    language(page, "zh")
    try:
        load(page, json.loads((REPO / "workflows" / "ui" / "anitalker_audio_hubert.json").read_text()))
        nodes = page.evaluate("""() => app.graph.nodes.filter(n => n.type.startsWith('AniTalker')).map(n =>
            [n.type, n.title, Object.fromEntries((n.widgets ?? []).filter(w => w.name !== 'anitalker_info')
                .map(w => [w.name, w.label ?? w.name]))])""")
        assert len(nodes) >= 8
        for node_type, title, labels in nodes:
            assert title == chinese[node_type]["display_name"], node_type
            for name, label in labels.items():
                if name in chinese[node_type]["inputs"]:
                    assert label == chinese[node_type]["inputs"][name]["name"], (node_type, name)
        page.screenshot(path=str(artifacts / f"{frontend}_chinese.png"))
        shown = open_help(page, 6)  # Load Portrait: web/docs/AniTalkerLoadPortrait/zh.md
        assert shown["headings"] == ["加载肖像", "何时使用", "示例", "注意事项", "输入", "输出"]
        assert shown["pictures"] == [True]
        page.screenshot(path=str(artifacts / f"{frontend}_chinese_help_panel.png"))
        page.keyboard.press("Escape")
    finally:  # the server keeps the setting: the other tests read English
        language(page, "en")
    assert not problems


def test_the_template_browser_lists_each_template_with_its_thumbnail(ui, server, artifacts, frontend):
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
    page.screenshot(path=str(artifacts / f"{frontend}_template_browser.png"))
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
