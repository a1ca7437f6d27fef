"""The layout engine: where each node of a workflow sits in the editor, and the two file formats.

Each node belongs to a stage (STAGES, in reading order; STAGE_OF by node type, else by menu folder, else from its
links). A stage is one coloured, titled group; its nodes stack in one column, and a node fed by another node of
the same stage moves one column to the right, so wires run left to right. Nodes are sized from their sockets,
widgets, previews and widget texts; a Markdown note with the workflow's explanation sits above two stages, and the
opening view (extra.ds) shows the whole graph in a 1600x1000 window of both frontends it is checked with (VIEW).
Where the plain rules would open a graph smaller than MIN_SCALE, denser variants are tried (Options): the note
above other stages, nodes without links inside their stage moved to its shortest column, a stage's chain stacked
in one column. A new workflow or node is placed by these rules, with no coordinates in its definition.

A graph maps node ids to (class_type, inputs) or (class_type, inputs, title); each input value is a literal (a
widget) or ["<node id>", <output slot>] (a link). Specs are node_specs.json's shape; only the standard library
is used, so the example workflows build without ComfyUI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Protocol


class Workflow(Protocol):
    """What the layout reads of a workflow definition."""

    note: str  # Markdown, shown in the note above the graph
    graph: dict  # node id -> (class_type, inputs) or (class_type, inputs, title)


@dataclass(frozen=True)
class Stage:
    key: str
    title: str
    color: str  # one of the editor's group colours
    stack: bool = False  # short hops at the end of the graph: keep one column even when nodes feed each other


STAGES = (
    Stage("inputs", "Inputs", "#3f789e"),
    Stage("models", "Models", "#8A8"),
    Stage("prepare", "Portrait & audio", "#b58b2a"),
    Stage("motion", "Motion", "#a1309b"),
    Stage("edit", "Motion edits", "#88A"),
    Stage("render", "Render", "#b06634"),
    Stage("output", "Video", "#8AA", stack=True),
)
STAGE_OF = {  # node type -> stage; pack nodes not listed follow their menu folder (FOLDER_STAGE)
    "LoadImage": "inputs", "LoadAudio": "inputs", "LoadVideo": "inputs",
    "UpscaleModelLoader": "models",
    "GetVideoComponents": "prepare", "AniTalkerLoadPortrait": "prepare", "AniTalkerAudioEncode": "prepare",
    "AniTalkerConversationTracks": "prepare", "AniTalkerFollowFace": "prepare",
    "AniTalkerLoadMotion": "motion",
    "ImageUpscaleWithModel": "render",
    "AniTalkerSideBySide": "output", "AniTalkerSaveMotion": "output", "AniTalkerSaveFrames": "output",
    "AniTalkerSaveProRes": "output", "CreateVideo": "output",
    "SaveVideo": "output", "SaveImage": "output", "PreviewImage": "output", "PreviewAny": "output",
}
FOLDER_STAGE = {"AniTalker/loaders": "models", "AniTalker/motion": "motion", "AniTalker/edit": "edit",
                "AniTalker/render": "render"}
PREVIEW_ROOM = {  # height under the widgets for what the editor shows there (image, video, face crop)
    "LoadImage": 240, "LoadVideo": 240, "AniTalkerLoadPortrait": 230, "SaveVideo": 240, "SaveImage": 240,
    "PreviewImage": 240, "PreviewAny": 60,
}
INFO_ROOM = 40  # two lines of a pack node's message (shown by web/anitalker.js)
MIN_W_OF = {"LoadVideo": 230}  # frontend 1.58 widens Load Video to 223 px whatever its file's name

# Editor metrics (frontend 1.27): title bar, socket row, widget row and the node's inner padding.
TITLE_H, SLOT_H, WIDGET_H, WIDGET_GAP, PAD_H = 30, 20, 20, 4, 14
MULTILINE_H = 96
MIN_W, MAX_W = 220, 280
CHAR_W, WIDGET_CHAR_W = 6.6, 6.0  # average glyph widths of the title and widget fonts
LABEL_CHAR_W, LABEL_PAD = 9.2, 30  # an input's label on its slot as frontend 1.58 sizes it: 223 px for 21 letters
COL_GAP, STAGE_GAP, ROW_GAP = 24, 24, 30  # between columns of a stage, between stages, between stacked nodes
GROUP_PAD, GROUP_TITLE_H, NOTE_GAP = 8, 40, 16
ORDER_BAND = 150  # nodes whose inputs come from about the same height keep their definition order
NOTE_W_MIN, NOTE_LINE_H, NOTE_CHARS_W = 520, 15, 5.4
VIEW = (56, 92, 1536, 922)
"""Where the opening view puts the graph (left, top, right, bottom, in the canvas of frontend 1.27 in a 1600x1000
window): the part both frontends show unobstructed. Frontend 1.27's canvas (1536x922) lies right of its 64 px side
bar and under its 78 px of top bars; frontend 1.58's fills the window under floating bars (a 56 px side bar, a 40 px
tab bar, buttons down to 88 px), so the same view shows everything 64 px further left and 78 px higher there."""
VIEW_MARGIN = 8
MIN_SCALE = 0.7  # an opening view smaller than this draws the nodes without their text
BYPASS = 4  # the editor's node mode for a bypassed node (Ctrl+B)


def entry(node: tuple) -> tuple[str, dict, str | None]:
    class_type, inputs, *rest = node
    return class_type, inputs, (rest[0] if rest else None)


def spec_of(specs: dict, class_type: str) -> dict:
    if class_type not in specs:
        raise KeyError(f"unknown node type {class_type!r}: the specs given have no entry for it")
    return specs[class_type]


def editor_order(inputs: list[dict]) -> list[dict]:
    """A node's inputs as the editor lists them, sockets and widgets alike: the required ones, then the optional
    ones, each in schema order (the order of /object_info's input_order). widgets_values follow it."""
    return [i for i in inputs if not i.get("optional")] + [i for i in inputs if i.get("optional")]


def is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def bypassed(node: tuple) -> bool:
    return bool(getattr(node, "bypassed", False))


def to_api(graph: dict) -> dict:
    """What the editor queues: bypassed nodes and the links from them left out (their targets are optional)."""
    api = {}
    for nid, node in graph.items():
        if bypassed(node):
            continue
        class_type, inputs, title = entry(node)
        inputs = {k: v for k, v in inputs.items() if not (is_link(v) and bypassed(graph[v[0]]))}
        api[nid] = {"class_type": class_type, "inputs": inputs}
        if title:
            api[nid]["_meta"] = {"title": title}
    return api


# ---------------------------------------------------------------------------------------------------- layout

def topological(graph: dict) -> list[str]:
    """Node ids, sources before the nodes they feed; ties keep the definition order."""
    order, done, visiting = [], set(), set()

    def visit(nid: str) -> None:
        if nid in done:
            return
        if nid in visiting:
            raise ValueError(f"the graph has a cycle through node {nid}")
        visiting.add(nid)
        for value in entry(graph[nid])[1].values():
            if is_link(value):
                visit(value[0])
        visiting.discard(nid)
        done.add(nid)
        order.append(nid)

    for nid in graph:
        visit(nid)
    return order


def sources(graph: dict, nid: str) -> list[str]:
    return [v[0] for v in entry(graph[nid])[1].values() if is_link(v)]


def stage_index(graph: dict, specs: dict) -> dict[str, int]:
    """Each node's stage: by type, else by menu folder, else from its links; never left of what feeds it."""
    keys = [s.key for s in STAGES]
    consumers = {v[0] for node in graph.values() for v in entry(node)[1].values() if is_link(v)}
    index: dict[str, int] = {}
    for nid in topological(graph):
        class_type = entry(graph[nid])[0]
        spec = spec_of(specs, class_type)
        feeds = [index[s] for s in sources(graph, nid)]
        key = STAGE_OF.get(class_type) or FOLDER_STAGE.get(spec.get("category", ""))
        if key is None:  # unknown: a source-less node is an input, a sink is output, else next to what feeds it
            key = "inputs" if not feeds else ("output" if nid not in consumers else keys[max(feeds)])
        index[nid] = max([keys.index(key), *feeds])
    return index


@dataclass(frozen=True)
class Options:
    """The layout's choices beyond the plain rules, tried by ``arrange`` until the graph opens at MIN_SCALE."""

    note_at: int = 0  # the note sits above this stage (index among the graph's stages) and the next ones
    note_span: int = 2  # how many stages the note spans
    balance: bool = False  # nodes linked to nothing in their stage go to its shortest column, not the first
    stacked: frozenset = field(default_factory=frozenset)  # stage keys kept in one column though nodes feed each other


def columns(graph: dict, stages: dict[str, int], options: Options = Options()) -> dict[str, tuple[int, int]]:
    """(stage, column within the stage): a node fed from its own stage sits right of its source."""
    place: dict[str, tuple[int, int]] = {}
    for nid in topological(graph):
        stage = stages[nid]
        inner = [place[s][1] + 1 for s in sources(graph, nid) if stages[s] == stage]
        one_column = STAGES[stage].stack or STAGES[stage].key in options.stacked
        place[nid] = (stage, 0 if one_column else max(inner, default=0))
    return place


def node_size(class_type: str, spec: dict, inputs: dict, title: str) -> tuple[int, int]:
    """The node's body (without its title bar) as the editor lays it out, plus room for previews and messages;
    wide enough for its title and its widgets' labels and values, within MIN_W..MAX_W."""
    widgets = [i for i in spec["inputs"] if i["widget"]]
    rows = max(len(spec["inputs"]) - len(widgets), len(spec["outputs"]))
    heights = [MULTILINE_H if w.get("multiline") else WIDGET_H for w in widgets]
    heights += [WIDGET_H for w in widgets if w.get("control_after_generate")]
    heights += spec.get("frontend_widgets", [])
    body = rows * SLOT_H + sum(h + WIDGET_GAP for h in heights) + PAD_H
    body += PREVIEW_ROOM.get(class_type, 0) + (INFO_ROOM if class_type.startswith("AniTalker") else 0)
    texts = [len(title) * CHAR_W + 40]
    texts += [len(w.get("label", w["name"]) + str(inputs.get(w["name"], ""))) * WIDGET_CHAR_W + 60
              for w in widgets if not w.get("multiline") and not is_link(inputs.get(w["name"]))]
    texts += [len(i["label"]) * LABEL_CHAR_W + LABEL_PAD for i in spec["inputs"] if "label" in i]
    least = max(MIN_W, MIN_W_OF.get(class_type, 0))
    return int(min(max(least, math.ceil(max(texts) / 10) * 10), MAX_W)), int(body)


@dataclass
class Box:
    """A rectangle in canvas units; for a node, title bar included (the editor's pos is the body's top-left)."""

    x: float
    y: float
    w: float
    h: float

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h


def around(boxes: list[Box], pad: float, top: float = 0.0) -> Box:
    x0, y0 = min(b.x for b in boxes) - pad, min(b.y for b in boxes) - pad - top
    return Box(x0, y0, max(b.right for b in boxes) + pad - x0, max(b.bottom for b in boxes) + pad - y0)


def place_nodes(graph: dict, specs: dict, stages: dict[str, int], options: Options = Options()) -> dict[str, Box]:
    """Columns left to right; in each, nodes top to bottom in the order of the height of what feeds them
    (fewer crossing wires), nodes fed from about the same height in definition order."""
    place = columns(graph, stages, options)
    sizes = {}
    for nid, node in graph.items():
        class_type, inputs, title = entry(node)
        spec = spec_of(specs, class_type)
        sizes[nid] = node_size(class_type, spec, inputs, title or spec["display_name"])
    if options.balance:
        place = balanced(graph, stages, place, sizes)
    order = {nid: i for i, nid in enumerate(graph)}
    boxes: dict[str, Box] = {}

    def feed_height(nid: str) -> float:
        fed = [boxes[s].y + boxes[s].h / 2 for s in sources(graph, nid) if s in boxes]
        return sum(fed) / len(fed) if fed else -1.0

    x, previous = 0.0, None  # previous: (stage, width) of the column to the left
    for stage, sub in sorted(set(place.values())):
        members = [nid for nid in topological(graph) if place[nid] == (stage, sub)]
        if previous is not None:
            x += previous[1] + (COL_GAP if previous[0] == stage else STAGE_GAP)
        if not STAGES[stage].stack:
            members.sort(key=lambda nid: (round(feed_height(nid) / ORDER_BAND), order[nid]))
        width, y = max(sizes[nid][0] for nid in members), 0.0
        for nid in members:
            boxes[nid] = Box(x, y, width, sizes[nid][1] + TITLE_H)
            y = boxes[nid].bottom + ROW_GAP
        previous = (stage, width)
    return boxes


def balanced(graph: dict, stages: dict[str, int], place: dict, sizes: dict) -> dict:
    """Nodes linked to nothing in their own stage moved to the stage's shortest column, tallest first, so a stage
    with several columns is no taller than it needs to be; chains inside the stage keep their columns."""
    linked = {nid for nid in graph for s in sources(graph, nid) if stages[s] == stages[nid]}
    linked |= {s for nid in graph for s in sources(graph, nid) if stages[s] == stages[nid]}
    place = dict(place)
    for stage in set(stages.values()):
        subs = sorted({sub for nid, (st, sub) in place.items() if st == stage})
        if len(subs) < 2:
            continue
        free = sorted((nid for nid in graph if stages[nid] == stage and nid not in linked),
                      key=lambda nid: -sizes[nid][1])
        height = {sub: sum(sizes[nid][1] + TITLE_H + ROW_GAP for nid in graph
                           if place[nid] == (stage, sub) and nid not in free) for sub in subs}
        for nid in free:
            sub = min(subs, key=lambda k: (height[k], k))
            place[nid] = (stage, sub)
            height[sub] += sizes[nid][1] + TITLE_H + ROW_GAP
    return place


def note_height(text: str, width: float) -> int:
    per_line = max(1, int((width - 30) / NOTE_CHARS_W))
    lines = sum(max(1, math.ceil(len(line) / per_line)) for line in text.splitlines())
    return int(lines * NOTE_LINE_H + 36)


@dataclass(frozen=True)
class Plan:
    boxes: dict[str, Box]  # node id -> rectangle
    note: Box
    groups: list[tuple[Stage, Box]]
    view: dict  # the editor's opening view: {"scale", "offset"}


def opening_view(extent: Box) -> dict:
    """The whole graph inside VIEW, as large as fits (at most 1:1). The editor draws canvas point p at
    (p + offset) * scale in its canvas."""
    left, top, right, bottom = VIEW
    scale = min(1.0, (right - left - 2 * VIEW_MARGIN) / extent.w, (bottom - top - 2 * VIEW_MARGIN) / extent.h)
    offset = [(left + VIEW_MARGIN) / scale - extent.x, (top + VIEW_MARGIN) / scale - extent.y]
    return {"scale": round(scale, 4), "offset": [round(v, 1) for v in offset]}


def candidates(graph: dict, stages: dict[str, int]) -> list[Options]:
    """The plain rules first, then denser variants, fewest changes first: the note above other stages, the note
    over three stages, free nodes balanced over a stage's columns, chains stacked in one column (the last stages
    first)."""
    present = sorted(set(stages.values()))
    chained = [STAGES[stages[nid]].key for nid in graph for s in sources(graph, nid)
               if stages[s] == stages[nid] and not STAGES[stages[nid]].stack]
    chained = sorted(set(chained), key=lambda key: -[st.key for st in STAGES].index(key))
    stackings = [frozenset(c) for n in range(len(chained) + 1) for c in combinations(chained, n)]
    return [Options(note_at, span, balance, stacked) for stacked in stackings for balance in (False, True)
            for span in (2, 3) for note_at in range(max(1, len(present) - span + 1))]


def arrange(wf: Workflow, specs: dict) -> Plan:
    """The first candidate layout that opens at MIN_SCALE or more, else the one that opens largest."""
    stages = stage_index(wf.graph, specs)
    best = None
    for options in candidates(wf.graph, stages):
        plan = arranged(wf, specs, stages, options)
        if plan.view["scale"] >= MIN_SCALE:
            return plan
        if best is None or plan.view["scale"] > best.view["scale"]:
            best = plan
    return best


def arranged(wf: Workflow, specs: dict, stages: dict[str, int], options: Options) -> Plan:
    """Nodes by stage, a titled group around each stage, the note above neighbouring stages."""
    boxes = place_nodes(wf.graph, specs, stages, options)
    present = sorted(set(stages.values()))
    under = [b for nid, b in boxes.items()
             if stages[nid] in present[options.note_at: options.note_at + options.note_span]]
    left = min(b.x for b in under)
    note_w = max(NOTE_W_MIN, max(b.right for b in under) - left + 2 * GROUP_PAD)
    note = Box(left, 0.0, note_w, note_height(wf.note, note_w) + TITLE_H)
    below = {s for s in present if any(b.right + 2 * GROUP_PAD > note.x and b.x < note.right
                                       for nid, b in boxes.items() if stages[nid] == s)}
    for nid, b in boxes.items():  # inside the groups' padding and title bars; the stages the note spans below it
        b.x += GROUP_PAD
        b.y += GROUP_PAD + GROUP_TITLE_H + (note.bottom + NOTE_GAP if stages[nid] in below else 0)
    groups = [(STAGES[s], around([boxes[nid] for nid in wf.graph if stages[nid] == s], GROUP_PAD, GROUP_TITLE_H))
              for s in present]
    return Plan(boxes, note, groups, opening_view(around([note] + [box for _, box in groups], 0.0)))


# ------------------------------------------------------------------------------------------------- UI format

def to_ui(wf: Workflow, specs: dict, models: dict | None = None) -> dict:
    """The editor's graph (workflow format 0.4): laid-out nodes, links, stage groups, the note, the view.
    models: file name -> {"url", "directory"}, downloads the editor offers when a widget names a missing file."""
    models = models or {}
    graph, plan = wf.graph, arrange(wf, specs)
    ids = {nid: int(nid) for nid in graph}
    out_links: dict[tuple[int, int], list[int]] = {}
    links, nodes = [], []
    for order, nid in enumerate(topological(graph)):
        class_type, inputs, title = entry(graph[nid])
        ui_inputs, values = [], []
        for item in editor_order(spec_of(specs, class_type)["inputs"]):
            name, kind = item["name"], item["type"]
            value = inputs.get(name)
            if is_link(value):
                src, slot = ids[value[0]], value[1]
                links.append([len(links) + 1, src, slot, ids[nid], len(ui_inputs),
                              spec_of(specs, entry(graph[value[0]])[0])["outputs"][slot][1]])
                out_links.setdefault((src, slot), []).append(len(links))
                ui_inputs.append({"name": name, "type": kind, "link": len(links)}
                                 | ({"widget": {"name": name}} if item["widget"] else {}))
            elif not item["widget"]:
                ui_inputs.append({"name": name, "type": kind, "link": None})
            else:
                value = item.get("default") if value is None else value  # a widget the graph leaves out: its default
                values += [value, "fixed"] if item.get("control_after_generate") else [value]
        box = plan.boxes[nid]
        node = {"id": ids[nid], "type": class_type, "pos": [box.x, box.y + TITLE_H], "size": [box.w, box.h - TITLE_H],
                "flags": {}, "order": order, "mode": BYPASS if bypassed(graph[nid]) else 0, "inputs": ui_inputs,
                "outputs": [],
                "properties": {"Node name for S&R": class_type}, "widgets_values": values}
        if title:
            node["title"] = title
        downloads = [{"name": v, **models[v]} for v in values if isinstance(v, str) and v in models]
        if downloads:
            node["properties"]["models"] = downloads
        nodes.append(node)
    for node in nodes:
        outputs = enumerate(spec_of(specs, node["type"])["outputs"])
        node["outputs"] = [{"name": name, "type": kind, "links": out_links.get((node["id"], slot), []),
                            "slot_index": slot} for slot, (name, kind) in outputs]
    note_id = max(ids.values()) + 1
    nodes.append({"id": note_id, "type": "MarkdownNote", "pos": [plan.note.x, plan.note.y + TITLE_H],
                  "size": [plan.note.w, plan.note.h - TITLE_H], "flags": {}, "order": len(nodes), "mode": 0,
                  "inputs": [], "outputs": [], "title": "Start here", "properties": {}, "widgets_values": [wf.note],
                  "color": "#432", "bgcolor": "#653"})
    groups = [{"id": i + 1, "title": stage.title, "bounding": [round(box.x), round(box.y), round(box.w), round(box.h)],
               "color": stage.color, "font_size": 24, "flags": {}} for i, (stage, box) in enumerate(plan.groups)]
    return {"last_node_id": note_id, "last_link_id": len(links), "nodes": nodes, "links": links, "groups": groups,
            "config": {}, "extra": {"ds": plan.view}, "version": 0.4}
