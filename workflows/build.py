"""Writes the example workflows in both ComfyUI formats from one definition each, laid out by stage.

    python workflows/build.py        # regenerates workflows/api/*.json, workflows/ui/*.json, example_workflows/*.json

API format (for scripts and the end-to-end test) maps node ids to {"class_type", "inputs"}; UI format is the
graph the editor opens (also served as templates from example_workflows/, named by their titles). Each input
value is either a literal (a widget) or ["<node id>", <output slot>] (a link).

Needs only the standard library: the pack's node specs come from workflows/specs/node_specs.json (refreshed
from the registered schemas by ``python tests/node_specs.py``; a test fails while it is stale), core nodes from
CORE. (No JSON sits directly in workflows/: ComfyUI would list it as a template.)
Everything is built in memory first; then every file is written beside its target and renamed into place, so
a failure leaves all files as they were.

Layout: each node belongs to a stage (STAGES, in reading order; STAGE_OF by node type, else by menu folder, else
from its links). A stage is one coloured, titled group; its nodes stack in one column, and a node fed by
another node of the same stage moves one column to the right, so wires run left to right. Nodes are sized
from their sockets, widgets, previews and widget texts; a Markdown note with the workflow's explanation sits
above the first stages, and the opening view (extra.ds) shows the whole graph in a 1600x1000 window.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS_FILE = ROOT / "workflows" / "specs" / "node_specs.json"


def widget(name: str, kind: str) -> dict:
    return {"name": name, "type": kind, "widget": True}


def socket(name: str, kind: str) -> dict:
    return {"name": name, "type": kind, "widget": False}


# Core ComfyUI nodes used here, in the shape of node_specs.json. "frontend_widgets": heights of widgets the editor
# adds on its own (upload buttons, the audio player); the browser test checks names and order against the server.
CORE = {
    "LoadImage": {"display_name": "Load Image", "inputs": [widget("image", "COMBO")],
                  "outputs": [["IMAGE", "IMAGE"], ["MASK", "MASK"]], "frontend_widgets": [20]},
    "LoadAudio": {"display_name": "Load Audio", "inputs": [widget("audio", "COMBO")],
                  "outputs": [["AUDIO", "AUDIO"]], "frontend_widgets": [50, 20]},
    "LoadVideo": {"display_name": "Load Video", "inputs": [widget("file", "COMBO")],
                  "outputs": [["VIDEO", "VIDEO"]], "frontend_widgets": [20]},
    "GetVideoComponents": {"display_name": "Get Video Components", "inputs": [socket("video", "VIDEO")],
                           "outputs": [["images", "IMAGE"], ["audio", "AUDIO"], ["fps", "FLOAT"]]},
    "CreateVideo": {"display_name": "Create Video",
                    "inputs": [socket("images", "IMAGE"), widget("fps", "FLOAT"), socket("audio", "AUDIO")],
                    "outputs": [["VIDEO", "VIDEO"]]},
    "SaveVideo": {"display_name": "Save Video", "output_node": True,
                  "inputs": [socket("video", "VIDEO"), widget("filename_prefix", "STRING"),
                             widget("format", "COMBO"), widget("codec", "COMBO")], "outputs": []},
    "SaveImage": {"display_name": "Save Image", "output_node": True,
                  "inputs": [socket("images", "IMAGE"), widget("filename_prefix", "STRING")], "outputs": []},
    "PreviewImage": {"display_name": "Preview Image", "output_node": True, "inputs": [socket("images", "IMAGE")],
                     "outputs": []},
    "PreviewAny": {"display_name": "Preview Any", "output_node": True, "inputs": [socket("source", "*")],
                   "outputs": []},
    "UpscaleModelLoader": {"display_name": "Load Upscale Model", "inputs": [widget("model_name", "COMBO")],
                           "outputs": [["UPSCALE_MODEL", "UPSCALE_MODEL"]]},
    "ImageUpscaleWithModel": {"display_name": "Upscale Image (using Model)",
                              "inputs": [socket("upscale_model", "UPSCALE_MODEL"), socket("image", "IMAGE")],
                              "outputs": [["IMAGE", "IMAGE"]]},
}


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
    "AniTalkerLoadMotion": "motion",
    "ImageUpscaleWithModel": "render",
    "AniTalkerSideBySide": "output", "AniTalkerSaveMotion": "output", "CreateVideo": "output",
    "SaveVideo": "output", "SaveImage": "output", "PreviewImage": "output", "PreviewAny": "output",
}
FOLDER_STAGE = {"AniTalker/loaders": "models", "AniTalker/motion": "motion", "AniTalker/edit": "edit",
                "AniTalker/render": "render"}
PREVIEW_ROOM = {  # height under the widgets for what the editor shows there (image, video, face crop)
    "LoadImage": 240, "LoadVideo": 240, "AniTalkerLoadPortrait": 230, "SaveVideo": 240, "SaveImage": 240,
    "PreviewImage": 240, "PreviewAny": 60,
}
INFO_ROOM = 40  # two lines of a pack node's message (shown by web/anitalker.js)
MODELS = {  # the editor offers these downloads when the file is missing (its allow-list includes this one)
    "RealESRGAN_x4plus.pth": {"url": "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/"
                                     "RealESRGAN_x4plus.pth", "directory": "upscale_models"},
}

# Editor metrics (frontend 1.27): title bar, socket row, widget row and the node's inner padding.
TITLE_H, SLOT_H, WIDGET_H, WIDGET_GAP, PAD_H = 30, 20, 20, 4, 14
MULTILINE_H = 96
MIN_W, MAX_W = 220, 280
CHAR_W, WIDGET_CHAR_W = 6.6, 6.0  # average glyph widths of the title and widget fonts
COL_GAP, STAGE_GAP, ROW_GAP = 30, 36, 46  # between columns of a stage, between stages, between stacked nodes
GROUP_PAD, GROUP_TITLE_H, NOTE_GAP = 10, 40, 30
ORDER_BAND = 150  # nodes whose inputs come from about the same height keep their definition order
NOTE_W_MIN, NOTE_LINE_H, NOTE_CHARS_W = 520, 15, 5.4
VIEW = (1536, 922)  # the graph canvas of a 1600x1000 window (right of the side bar, under the top bars)
VIEW_MARGIN = 14

PORTRAIT = "monalisa.jpg"
SPEECH = "statue.wav"
DRIVING = "driving_talking_face.mp4"
UPSCALER = "RealESRGAN_x4plus.pth"
CKPTS = "[taocode/anitalker_ckpts](https://huggingface.co/taocode/anitalker_ckpts)"
HUBERT = "[chinese-hubert-large](https://huggingface.co/TencentGameMate/chinese-hubert-large)"


@dataclass(frozen=True)
class Workflow:
    title: str  # the template's name in ComfyUI's template browser (file name in example_workflows/)
    note: str  # Markdown: what the graph does and what to change first
    graph: dict = field(default_factory=dict)  # node id -> (class_type, inputs) or (class_type, inputs, title)


def common(variant_file: str, encoder: str, precision: str = "auto") -> dict:
    return {
        "1": ("LoadImage", {"image": PORTRAIT}),
        "2": ("LoadAudio", {"audio": SPEECH}),
        "3": ("AniTalkerLoadRenderer", {"ckpt_name": "stage1.ckpt", "device": "auto", "precision": precision}),
        "4": ("AniTalkerLoadMotionGenerator", {"ckpt_name": variant_file, "device": "auto"}),
        "5": ("AniTalkerLoadAudioEncoder", {"encoder": encoder, "device": "auto"}),
        "6": ("AniTalkerLoadPortrait", {"image": ["1", 0], "renderer": ["3", 0], "crop_mode": "auto", "margin": 0.65,
                                        "box_x": 0, "box_y": 0, "box_size": 512}),
        "7": ("AniTalkerAudioEncode", {"audio": ["2", 0], "audio_encoder": ["5", 0]}),
    }


def sampler(control=None, takes=1) -> tuple:
    inputs = {"generator": ["4", 0], "portrait": ["6", 0], "audio_features": ["7", 0], "seed": 0, "steps": 25,
              "seed_mode": "torch", "takes": takes}
    if control:
        inputs["control"] = control
    return ("AniTalkerDiffusionSampler", inputs)


def video(images, audio, prefix) -> dict:
    return {
        "20": ("CreateVideo", {"images": images, "fps": 25.0, "audio": audio}),
        "21": ("SaveVideo", {"video": ["20", 0], "filename_prefix": prefix, "format": "mp4", "codec": "h264"}),
    }


def render(motion, node="9", title=None) -> dict:
    inputs = {"renderer": ["3", 0], "portrait": ["6", 0], "motion": motion, "batch_size": 0, "take": 0}
    return {node: ("AniTalkerRenderFrames", inputs, title) if title else ("AniTalkerRenderFrames", inputs)}


WORKFLOWS = {
    "anitalker_audio_hubert": Workflow(
        "AniTalker - talking head from speech (HuBERT)",
        "### Talking head from speech\n"
        "One portrait and one voice recording in, an mp4 with the speech out.\n\n"
        "**Change first:** your picture in **Load Image** and your speech in **Load Audio**, then Run.\n\n"
        f"- Weights in `models/anitalker/`: `stage1.ckpt`, `stage2_audio_only_hubert.ckpt` ({CKPTS}) and the "
        f"`chinese-hubert-large` folder ({HUBERT}).\n"
        "- **Load Portrait** shows the face it cropped. Another **seed** gives other head motion; 25 **steps** "
        "are nearly as good as 50.\n"
        "- **Calm Silence** lets the mouth settle and the head hold in the speaker's pauses; **Motion Plot** "
        "shows the motion before (A) and after (B), pauses shaded.\n"
        "- The mp4 is saved in `output/anitalker/`.",
        {**common("stage2_audio_only_hubert.ckpt", "chinese-hubert-large"),
         "8": sampler(),
         "25": ("AniTalkerMotionCalmSilence", {"motion": ["8", 0], "audio": ["2", 0], "strength": 1.0,
                                               "min_pause_s": 0.5, "head": 0.25}),
         "26": ("AniTalkerMotionPlot", {"motion": ["8", 0], "motion_b": ["25", 0], "audio": ["2", 0],
                                        "min_pause_s": 0.5, "width": 900, "height": 600}),
         **render(["25", 0]), **video(["9", 0], ["2", 0], "anitalker/hubert")},
    ),
    "anitalker_mfcc_pose_control": Workflow(
        "AniTalker - head turns with keyframes (MFCC)",
        "### Head turns with keyframes\n"
        "The speech moves the lips; the **keyframes** in **Variance Control** turn the head.\n\n"
        "**Change first:** the keyframes (`frame: yaw=.. pitch=..`, or a time like `2s:`), then your picture "
        "and speech.\n\n"
        "- Keyframes drive the values they set; the sliders give the others (the node says which after a run). "
        "Beyond about 30 degrees of yaw the face starts to distort.\n"
        "- **Motion To Keyframes** writes the head pose the generator actually used as keyframes: copy them into "
        "Variance Control to edit a take's head motion.\n"
        f"- Weights in `models/anitalker/`: `stage1.ckpt`, `stage2_full_control_mfcc.ckpt` ({CKPTS}). "
        "MFCC needs no download.",
        {**common("stage2_full_control_mfcc.ckpt", "mfcc (built in, no download)"),
         "10": ("AniTalkerVarianceControl", {"yaw": 0.0, "pitch": 0.0, "roll": 0.0, "face_location": 0.5,
                                             "face_scale": 0.5,
                                             "keyframes": "0: yaw=-15 pitch=0\n2s: yaw=15 pitch=5\n4s: yaw=0"}),
         "8": sampler(control=["10", 0]),
         "26": ("AniTalkerMotionToKeyframes", {"motion": ["8", 0], "take": 0, "tolerance_deg": 1.0}),
         **render(["8", 0]), **video(["9", 0], ["2", 0], "anitalker/mfcc_pose")},
    ),
    "anitalker_video_driven": Workflow(
        "AniTalker - copy the motion of a video",
        "### Copy the motion of a video\n"
        "A video of a talking face moves your portrait: head, lips and blinks.\n\n"
        "**Change first:** the clip in **Load Video** (one face, cropped like the portrait, 25 fps is native), "
        "then your picture.\n\n"
        "- **Motion from Video** in *relative* mode keeps the portrait's own pose and transfers only the change.\n"
        f"- Needs only `stage1.ckpt` ({CKPTS}) in `models/anitalker/`. The clip's sound goes under the result.",
        {
            "1": ("LoadImage", {"image": PORTRAIT}),
            "11": ("LoadVideo", {"file": DRIVING}),
            "3": ("AniTalkerLoadRenderer", {"ckpt_name": "stage1.ckpt", "device": "auto", "precision": "auto"}),
            "6": ("AniTalkerLoadPortrait", {"image": ["1", 0], "renderer": ["3", 0], "crop_mode": "auto",
                                            "margin": 0.65, "box_x": 0, "box_y": 0, "box_size": 512}),
            "12": ("GetVideoComponents", {"video": ["11", 0]}),
            "13": ("AniTalkerMotionExtract", {"renderer": ["3", 0], "driving_frames": ["12", 0], "portrait": ["6", 0],
                                              "mode": "relative"}),
            **render(["13", 0]), **video(["9", 0], ["12", 1], "anitalker/video_driven"),
        },
    ),
    "anitalker_audio_upscale_mp4": Workflow(
        "AniTalker - full picture, any length (upscale + paste back)",
        "### Full picture, any length\n"
        "The talking head upscaled and pasted back into the whole picture, saved with the speech. **Render "
        "Video** renders nothing until **Save Video** writes the file; then each batch of frames is rendered, "
        "upscaled, pasted and encoded, so a clip of any length at any picture size needs the memory of one "
        "batch.\n\n"
        f"**Change first:** the model in **Load Upscale Model**. It expects `{UPSCALER}` in "
        f"`models/upscale_models/` ([download]({MODELS[UPSCALER]['url']})); any upscale model works, or none.\n\n"
        "- The head blends in through a soft ellipse with matched colours; the rest of the picture stays as it "
        "is. **feather** widens the soft edge; **mask** *box* pastes the whole square.\n"
        "- **Render Video** says how long the save will take and how much memory one batch needs (a short "
        "warm-up measures it on your machine).\n"
        f"- Weights in `models/anitalker/`: `stage1.ckpt`, `stage2_audio_only_hubert.ckpt` ({CKPTS}) and the "
        f"`chinese-hubert-large` folder ({HUBERT}).",
        {**common("stage2_audio_only_hubert.ckpt", "chinese-hubert-large"),
         "8": sampler(),
         "14": ("UpscaleModelLoader", {"model_name": UPSCALER}),
         "24": ("AniTalkerRenderVideo", {"renderer": ["3", 0], "portrait": ["6", 0], "motion": ["8", 0], "take": 0,
                                         "audio": ["2", 0], "original": ["1", 0], "upscale_model": ["14", 0],
                                         "feather": 0.1, "color_match": True, "mask": "head", "batch_size": 0}),
         "21": ("SaveVideo", {"video": ["24", 0], "filename_prefix": "anitalker/full_picture", "format": "mp4",
                              "codec": "h264"})},
    ),
    "anitalker_paste_back_frames": Workflow(
        "AniTalker - paste back as frames (short clips)",
        "### Paste back as IMAGE frames\n"
        "The same paste back as an IMAGE batch, for short clips you want to retouch frame by frame or feed to "
        "other image nodes. Every frame sits in memory at full size: for long clips use **Render Video**.\n\n"
        "**Change first:** your picture and speech; **feather**, **color_match** and **mask** in **Paste Back**.\n\n"
        "- Before the long work, the sampler, **Render Frames** and **Paste Back** show how long it will take and "
        "the memory it needs; a clip too long for the memory left is refused at once, with what to change.\n"
        f"- Weights in `models/anitalker/`: `stage1.ckpt`, `stage2_full_control_mfcc.ckpt` ({CKPTS}). "
        "MFCC needs no download.",
        {**common("stage2_full_control_mfcc.ckpt", "mfcc (built in, no download)"),
         "8": sampler(), **render(["8", 0]),
         "16": ("AniTalkerPasteBack", {"original": ["1", 0], "frames": ["9", 0], "portrait": ["6", 0],
                                       "feather": 0.1, "color_match": True, "mask": "head"}),
         **video(["16", 0], ["2", 0], "anitalker/pasted")},
    ),
    "anitalker_compare_takes": Workflow(
        "AniTalker - compare raw and calmed motion",
        "### Compare raw and calmed motion\n"
        "One take rendered twice, side by side: left as sampled, right smoothed and with a calmer head.\n\n"
        "**Change first:** **strength** in **Motion Smooth** and **head** in **Motion Strength** (below 1 is "
        "calmer), then Run: only the right side is rendered again.\n\n"
        "- Motion edits cost nothing next to rendering; try a few values.\n"
        f"- Weights in `models/anitalker/`: `stage1.ckpt`, `stage2_full_control_mfcc.ckpt` ({CKPTS}).",
        {**common("stage2_full_control_mfcc.ckpt", "mfcc (built in, no download)"),
         "8": sampler(),
         "18": ("AniTalkerMotionSmooth", {"motion": ["8", 0], "strength": 1.5}),
         "19": ("AniTalkerMotionStrength", {"motion": ["18", 0], "strength": 1.0, "head": 0.6, "mouth": 1.0}),
         **render(["8", 0], "9", "Render (raw)"), **render(["19", 0], "22", "Render (calmed)"),
         "23": ("AniTalkerSideBySide", {"left": ["9", 0], "right": ["22", 0]}),
         **video(["23", 0], ["2", 0], "anitalker/compare")},
    ),
}


def load_specs() -> dict[str, dict]:
    return {**json.loads(SPECS_FILE.read_text(encoding="utf-8")), **CORE}


def entry(node: tuple) -> tuple[str, dict, str | None]:
    class_type, inputs, *rest = node
    return class_type, inputs, (rest[0] if rest else None)


def spec_of(specs: dict, class_type: str) -> dict:
    if class_type not in specs:
        raise KeyError(f"unknown node type {class_type!r}: add it to CORE in workflows/build.py, or refresh "
                       "workflows/specs/node_specs.json with `python tests/node_specs.py` if it is one of the pack's")
    return specs[class_type]


def is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def to_api(graph: dict) -> dict:
    api = {}
    for nid, node in graph.items():
        class_type, inputs, title = entry(node)
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


def columns(graph: dict, stages: dict[str, int]) -> dict[str, tuple[int, int]]:
    """(stage, column within the stage): a node fed from its own stage sits right of its source."""
    place: dict[str, tuple[int, int]] = {}
    for nid in topological(graph):
        stage = stages[nid]
        inner = [place[s][1] + 1 for s in sources(graph, nid) if stages[s] == stage]
        place[nid] = (stage, 0 if STAGES[stage].stack else max(inner, default=0))
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
    return int(min(max(MIN_W, math.ceil(max(texts) / 10) * 10), MAX_W)), int(body)


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


def place_nodes(graph: dict, specs: dict, stages: dict[str, int]) -> dict[str, Box]:
    """Columns left to right; in each, nodes top to bottom in the order of the height of what feeds them
    (fewer crossing wires), nodes fed from about the same height in definition order."""
    place = columns(graph, stages)
    sizes = {}
    for nid, node in graph.items():
        class_type, inputs, title = entry(node)
        spec = spec_of(specs, class_type)
        sizes[nid] = node_size(class_type, spec, inputs, title or spec["display_name"])
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
    """The whole graph in the canvas of a 1600x1000 window, as large as fits (at most 1:1).
    The editor draws canvas point p at (p + offset) * scale."""
    scale = min(1.0, (VIEW[0] - 2 * VIEW_MARGIN) / extent.w, (VIEW[1] - 2 * VIEW_MARGIN) / extent.h)
    offset = [VIEW_MARGIN / scale - extent.x, VIEW_MARGIN / scale - extent.y]
    return {"scale": round(scale, 4), "offset": [round(v, 1) for v in offset]}


def layout(wf: Workflow, specs: dict) -> Plan:
    """Nodes by stage, a titled group around each stage, the note above the first two stages."""
    stages = stage_index(wf.graph, specs)
    boxes = place_nodes(wf.graph, specs, stages)
    present = sorted(set(stages.values()))
    first_two = [b for nid, b in boxes.items() if stages[nid] in present[:2]]
    note_w = max(NOTE_W_MIN, max(b.right for b in first_two) + 2 * GROUP_PAD)
    note = Box(0.0, 0.0, note_w, note_height(wf.note, note_w) + TITLE_H)
    for b in boxes.values():  # below the note, inside the groups' padding and title bars
        b.x += GROUP_PAD
        b.y += note.bottom + NOTE_GAP + GROUP_PAD + GROUP_TITLE_H
    groups = [(STAGES[s], around([boxes[nid] for nid in wf.graph if stages[nid] == s], GROUP_PAD, GROUP_TITLE_H))
              for s in present]
    return Plan(boxes, note, groups, opening_view(around([note] + [box for _, box in groups], 0.0)))


# ------------------------------------------------------------------------------------------------- UI format

def to_ui(wf: Workflow, specs: dict | None = None) -> dict:
    """The editor's graph (workflow format 0.4): laid-out nodes, links, stage groups, the note, the view."""
    specs = specs or load_specs()
    graph, plan = wf.graph, layout(wf, specs)
    ids = {nid: int(nid) for nid in graph}
    out_links: dict[tuple[int, int], list[int]] = {}
    links, nodes = [], []
    for order, nid in enumerate(topological(graph)):
        class_type, inputs, title = entry(graph[nid])
        ui_inputs, values = [], []
        for item in spec_of(specs, class_type)["inputs"]:
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
                values += [value, "fixed"] if item.get("control_after_generate") else [value]
        box = plan.boxes[nid]
        node = {"id": ids[nid], "type": class_type, "pos": [box.x, box.y + TITLE_H], "size": [box.w, box.h - TITLE_H],
                "flags": {}, "order": order, "mode": 0, "inputs": ui_inputs, "outputs": [],
                "properties": {"Node name for S&R": class_type}, "widgets_values": values}
        if title:
            node["title"] = title
        models = [{"name": v, **MODELS[v]} for v in values if isinstance(v, str) and v in MODELS]
        if models:
            node["properties"]["models"] = models
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


# ---------------------------------------------------------------------------------------------------- output

def dump(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render_all() -> dict[Path, str]:
    """Every generated file and its text, built in memory; nothing is written here."""
    specs = load_specs()
    files: dict[Path, str] = {}
    for name, wf in WORKFLOWS.items():
        ui = dump(to_ui(wf, specs))
        files[ROOT / "workflows" / "api" / f"{name}.json"] = dump(to_api(wf.graph))
        files[ROOT / "workflows" / "ui" / f"{name}.json"] = ui
        files[ROOT / "example_workflows" / f"{wf.title}.json"] = ui
    return files


def write_all(files: dict[Path, str]) -> None:
    """All files or none: each goes to a temporary file beside its target; only when every one is written are
    they renamed into place (a rename within one folder replaces the file in one step)."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
            staged.append((Path(tmp), path))
            os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)  # mkstemp makes it private
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, path in staged:
        os.replace(tmp, path)


def main() -> None:
    write_all(render_all())


if __name__ == "__main__":
    main()
