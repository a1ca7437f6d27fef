"""The example workflows, one definition each, and the node specs they are built from.

A definition states only what differs from a node's defaults; every other widget takes the default the pack's
schema declares (recorded in workflows/specs/node_specs.json by ``python -m tests.support.node_specs``), so a default has
one home and a workflow follows it when it changes. Core ComfyUI nodes (CORE) have no recorded defaults: their
widgets are stated in full. Only the standard library is used, so the workflows build without ComfyUI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

SPECS_FILE = Path(__file__).resolve().parent / "specs" / "node_specs.json"


def widget(name: str, kind: str) -> dict:
    return {"name": name, "type": kind, "widget": True}


def socket(name: str, kind: str) -> dict:
    return {"name": name, "type": kind, "widget": False}


# Core ComfyUI nodes used here, in the shape of node_specs.json, without defaults: definitions state their widgets.
# "frontend_widgets": heights of widgets the editor adds on its own (upload buttons, the audio player); the browser
# test checks names and order against the server.
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


def load_specs() -> dict[str, dict]:
    return {**json.loads(SPECS_FILE.read_text(encoding="utf-8")), **CORE}


SPECS = load_specs()
NO_DEFAULT = object()


def spec_of(class_type: str) -> dict:
    if class_type not in SPECS:
        raise KeyError(f"unknown node type {class_type!r}: add it to CORE in workflows/definitions.py, or refresh "
                       "workflows/specs/node_specs.json with `python -m tests.support.node_specs` if it is one of the pack's")
    return SPECS[class_type]


def widget_default(item: dict):
    """What the editor puts in a new node's widget: the declared default, else a combo's first option (as on a
    fresh install: the snapshot lists no model files); NO_DEFAULT for a widget with neither."""
    if "default" in item:
        return item["default"]
    return item["options"][0] if item.get("options") else NO_DEFAULT


def default(class_type: str, name: str):
    """A widget's default, for a note that names it."""
    return widget_default(next(i for i in spec_of(class_type)["inputs"] if i["name"] == name))


class Node(NamedTuple):
    """A graph entry, (class_type, inputs, title) to the layout, plus the names the definition stated and whether
    it starts bypassed (shown where it plugs in, left out of the run until the user turns it on)."""

    class_type: str
    inputs: dict  # the stated inputs and every other widget's default, in the node's input order
    title: str | None = None
    stated: tuple[str, ...] = ()
    bypassed: bool = False


def node(class_type: str, stated: dict, title: str | None = None, bypassed: bool = False) -> Node:
    """The node with what the definition states and the defaults for the rest; a stated default is refused, so
    a changed default in the pack reaches every workflow."""
    items = {item["name"]: item for item in spec_of(class_type)["inputs"]}
    unknown = set(stated) - set(items)
    if unknown:
        raise KeyError(f"{class_type} has no input {', '.join(sorted(unknown))}")
    inputs = {}
    for name, item in items.items():
        fallback = widget_default(item) if item["widget"] else NO_DEFAULT
        if name in stated:
            if stated[name] == fallback:
                raise ValueError(f"{class_type}: {name}={stated[name]!r} is the node's default; leave it out")
            inputs[name] = stated[name]
        elif fallback is not NO_DEFAULT:
            inputs[name] = fallback
        elif item["widget"]:
            raise ValueError(f"{class_type}: the widget {name} has no default; state it")
    return Node(class_type, inputs, title, tuple(stated), bypassed)


FPS = 25.0  # AniTalker's frame rate (the sampler's fps output at run time); CreateVideo's fps widget needs a value
STEPS = 25  # fewer than the sampler's default: nearly as good, and faster
# Input files: the samples the pack copies into ComfyUI's input folder at start-up (nodes/sample_inputs.py)
PORTRAIT = "anitalker_monalisa.jpg"
SPEECH = "anitalker_statue.wav"
DRIVING = "anitalker_driving.mp4"
FOOTAGE = DRIVING  # a talking head the dub puts new speech on
TWO_FACES = "anitalker_two_faces.jpg"  # two people side by side
SPEAKERS = ("anitalker_speaker_1.wav", "anitalker_speaker_2.wav")  # each speaker's own recording
UPSCALER = "RealESRGAN_x4plus.pth"
FACE_MODEL = "GFPGANv1.4.pth"
FACE_MODEL_URL = f"https://github.com/TencentARC/GFPGAN/releases/download/v1.3.4/{FACE_MODEL}"
HUBERT_ENCODER = "chinese-hubert-large"  # the folder in models/anitalker
MFCC_GENERATOR = "stage2_full_control_mfcc.ckpt"
CKPTS = "[taocode/anitalker_ckpts](https://huggingface.co/taocode/anitalker_ckpts)"
HUBERT = "[chinese-hubert-large](https://huggingface.co/TencentGameMate/chinese-hubert-large)"
MODELS = {  # the editor offers these downloads when the file is missing (its allow-list includes this one)
    UPSCALER: {"url": f"https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/{UPSCALER}",
               "directory": "upscale_models"},
}


@dataclass(frozen=True)
class Workflow:
    title: str  # the template's name in ComfyUI's template browser (file name in example_workflows/)
    note: str  # Markdown: what the graph does and what to change first
    graph: dict = field(default_factory=dict)  # node id -> Node


def given(**inputs) -> dict:
    """The inputs a caller chose, without those it left to the node's defaults (None)."""
    return {name: value for name, value in inputs.items() if value is not None}


def common(generator: str | None = None, encoder: str | None = None) -> dict:
    """Portrait, speech, the three loaders and the two encoders; generator and encoder: files other than the
    nodes' defaults."""
    return {
        "1": node("LoadImage", {"image": PORTRAIT}),
        "2": node("LoadAudio", {"audio": SPEECH}),
        "3": node("AniTalkerLoadRenderer", {}),
        "4": node("AniTalkerLoadMotionGenerator", given(ckpt_name=generator)),
        "5": node("AniTalkerLoadAudioEncoder", given(encoder=encoder)),
        "6": node("AniTalkerLoadPortrait", {"image": ["1", 0], "renderer": ["3", 0]}),
        "7": node("AniTalkerAudioEncode", {"audio": ["2", 0], "audio_encoder": ["5", 0]}),
    }


def sampler(control=None) -> Node:
    """A control link goes after the widgets, where the API files list it."""
    made = node("AniTalkerDiffusionSampler", {"generator": ["4", 0], "portrait": ["6", 0], "audio_features": ["7", 0],
                                              "steps": STEPS})
    if control is None:
        return made
    return made._replace(inputs={**made.inputs, "control": control}, stated=(*made.stated, "control"))


def save_video(source, prefix) -> Node:
    return node("SaveVideo", {"video": source, "filename_prefix": prefix, "format": "mp4", "codec": "h264"})


def video(images, audio, prefix) -> dict:
    return {"20": node("CreateVideo", {"images": images, "fps": FPS, "audio": audio}),
            "21": save_video(["20", 0], prefix)}


def render(motion, nid="9", title=None) -> dict:
    return {nid: node("AniTalkerRenderFrames", {"renderer": ["3", 0], "portrait": ["6", 0], "motion": motion}, title)}


WORKFLOWS = {
    "anitalker_audio_hubert": Workflow(
        "AniTalker - talking head from speech (HuBERT)",
        "### Talking head from speech\n"
        "One portrait and one voice recording in, an mp4 with the speech out.\n\n"
        "**Change first:** your picture in **Load Image** and your speech in **Load Audio**, then Run.\n\n"
        f"- Weights in `models/anitalker/`: `stage1.ckpt`, `stage2_audio_only_hubert.ckpt` ({CKPTS}) and the "
        f"`chinese-hubert-large` folder ({HUBERT}).\n"
        f"- **Load Portrait** shows the face it cropped. Another **seed** gives other head motion; {STEPS} **steps** "
        f"are nearly as good as {default('AniTalkerDiffusionSampler', 'steps')}.\n"
        "- **Calm Silence** lets the mouth settle and the head hold in the speaker's pauses; **Motion Plot** "
        "shows the motion before (A) and after (B), pauses shaded.\n"
        "- The mp4 is saved in `output/anitalker/`.",
        {**common(encoder=HUBERT_ENCODER),
         "8": sampler(),
         "25": node("AniTalkerMotionCalmSilence", {"motion": ["8", 0], "audio": ["2", 0]}),
         "26": node("AniTalkerMotionPlot", {"motion": ["8", 0], "motion_b": ["25", 0], "audio": ["2", 0]}),
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
        {**common(generator=MFCC_GENERATOR),
         "10": node("AniTalkerVarianceControl", {"keyframes": "0: yaw=-15 pitch=0\n2s: yaw=15 pitch=5\n4s: yaw=0"}),
         "8": sampler(control=["10", 0]),
         "26": node("AniTalkerMotionToKeyframes", {"motion": ["8", 0]}),
         **render(["8", 0]), **video(["9", 0], ["2", 0], "anitalker/mfcc_pose")},
    ),
    "anitalker_video_driven": Workflow(
        "AniTalker - copy the motion of a video",
        "### Copy the motion of a video\n"
        "A video of a talking face moves your portrait: head, lips and blinks.\n\n"
        f"**Change first:** the clip in **Load Video** (one face, cropped like the portrait, {FPS:g} fps is native), "
        "then your picture.\n\n"
        "- **Motion from Video** in *relative* mode keeps the portrait's own pose and transfers only the change.\n"
        f"- Needs only `stage1.ckpt` ({CKPTS}) in `models/anitalker/`. The clip's sound goes under the result.",
        {
            "1": node("LoadImage", {"image": PORTRAIT}),
            "11": node("LoadVideo", {"file": DRIVING}),
            "3": node("AniTalkerLoadRenderer", {}),
            "6": node("AniTalkerLoadPortrait", {"image": ["1", 0], "renderer": ["3", 0]}),
            "12": node("GetVideoComponents", {"video": ["11", 0]}),
            "13": node("AniTalkerMotionExtract", {"renderer": ["3", 0], "driving_frames": ["12", 0],
                                                  "portrait": ["6", 0]}),
            **render(["13", 0]), **video(["9", 0], ["12", 1], "anitalker/video_driven"),
        },
    ),
    "anitalker_audio_upscale_mp4": Workflow(
        "AniTalker - full picture, any length (upscale + paste back)",
        "### Full picture, any length\n"
        "The talking head pasted back into the whole picture, with the speech. **Render Video** renders when "
        "**Save Video** writes the file, batch by batch: any length fits in one batch.\n\n"
        f"**Change first:** the model in **Load Upscale Model** (`{UPSCALER}` in `models/upscale_models/`, which "
        "the editor offers to download; any upscale model works, or none).\n\n"
        f"**Sharper face:** `{FACE_MODEL}` ([download]({FACE_MODEL_URL})) in `models/upscale_models/` or "
        "`models/facerestore_models/`; select **Load Face Model**, Ctrl+B: each head becomes a sharp 512x512 "
        "face before the upscale.\n\n"
        "- A soft ellipse around the head, colours matched, the rest of the picture untouched: **feather** widens "
        "the edge, **mask** *box* pastes the square.\n"
        "- **Render Video** shows how long the save will take and the memory of one batch.\n"
        f"- Weights in `models/anitalker/`: `stage1.ckpt`, `stage2_audio_only_hubert.ckpt` ({CKPTS}) and the "
        f"`chinese-hubert-large` folder ({HUBERT}).",
        {**common(encoder=HUBERT_ENCODER),
         "8": sampler(),
         "14": node("UpscaleModelLoader", {"model_name": UPSCALER}),
         "15": node("UpscaleModelLoader", {"model_name": FACE_MODEL}, "Load Face Model", bypassed=True),
         "24": node("AniTalkerRenderVideo", {"renderer": ["3", 0], "portrait": ["6", 0], "motion": ["8", 0],
                                             "audio": ["2", 0], "original": ["1", 0], "upscale_model": ["14", 0],
                                             "face_model": ["15", 0]}),
         "21": save_video(["24", 0], "anitalker/full_picture")},
    ),
    "anitalker_frames_for_compositing": Workflow(
        "AniTalker - frames for compositing (16-bit PNG with alpha)",
        "### Frames for compositing\n"
        "The talking head pasted back into the whole picture and written as numbered 16-bit PNGs whose alpha is "
        "the head's matte, with `audio.wav` and `sequence.json`, into `output/anitalker/frames_<counter>/`. **Render "
        "Video** renders nothing until **Save Frames** writes: then each batch is rendered, pasted and written, so "
        "a clip of any length at any picture size needs the memory of one batch.\n\n"
        "**Change first:** in **Save Frames**, **first_frame** (1001 here, as for a VFX shot), **format** (png, "
        "png16, exr half float, jpg) and **matte** (alpha; separate: `matte_<number>.png` files; none).\n\n"
        "- **head_only** writes the rendered head alone over transparency, to lay over the original picture.\n"
        "- One file instead: swap Save Frames for **Save ProRes 4444** (a .mov with the matte as alpha).\n"
        f"- Weights in `models/anitalker/`: `stage1.ckpt`, `stage2_full_control_mfcc.ckpt` ({CKPTS}). "
        "MFCC needs no download.",
        {**common(generator=MFCC_GENERATOR),
         "8": sampler(),
         "24": node("AniTalkerRenderVideo", {"renderer": ["3", 0], "portrait": ["6", 0], "motion": ["8", 0],
                                             "audio": ["2", 0], "original": ["1", 0]}),
         "27": node("AniTalkerSaveFrames", {"video": ["24", 0], "format": "png16", "matte": "alpha",
                                            "first_frame": 1001})},
    ),
    "anitalker_paste_back_frames": Workflow(
        "AniTalker - paste back as frames (short clips)",
        "### Paste back as IMAGE frames\n"
        "The same paste back as an IMAGE batch, for short clips you want to retouch frame by frame or feed to "
        "other image nodes. Every frame sits in memory at full size: for long clips use **Render Video**, and for "
        "image files to composite the *frames for compositing* workflow (Render Video -> Save Frames).\n\n"
        "**Change first:** your picture and speech; **feather**, **color_match** and **mask** in **Paste Back**.\n\n"
        "- Before the long work, the sampler, **Render Frames** and **Paste Back** show how long it will take and "
        "the memory it needs; a clip too long for the memory left is refused at once, with what to change.\n"
        f"- Weights in `models/anitalker/`: `stage1.ckpt`, `stage2_full_control_mfcc.ckpt` ({CKPTS}). "
        "MFCC needs no download.",
        {**common(generator=MFCC_GENERATOR),
         "8": sampler(), **render(["8", 0]),
         "16": node("AniTalkerPasteBack", {"original": ["1", 0], "frames": ["9", 0], "portrait": ["6", 0],
                                           "color_match": True, "mask": "head"}),  # the seamless paste
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
        {**common(generator=MFCC_GENERATOR),
         "8": sampler(),
         "18": node("AniTalkerMotionSmooth", {"motion": ["8", 0], "strength": 1.5}),
         "19": node("AniTalkerMotionStrength", {"motion": ["18", 0], "head": 0.6}),
         **render(["8", 0], "9", "Render (raw)"), **render(["19", 0], "22", "Render (calmed)"),
         "23": node("AniTalkerSideBySide", {"left": ["9", 0], "right": ["22", 0]}),
         **video(["23", 0], ["2", 0], "anitalker/compare")},
    ),
    "anitalker_conversation": Workflow(
        "AniTalker - a conversation (two faces)",
        "### A conversation: two faces, two voices\n"
        "Two people in one picture, each talking with its own voice and listening while the other speaks.\n\n"
        "**Change first:** your picture in **Load Image** (faces numbered from the left: **Load Portrait** "
        "previews them) and each speaker's recording in the two **Load Audio** nodes, then Run.\n\n"
        "- Give each speaker's own track (silence where the other speaks), or one stereo recording with a speaker "
        "per side in the first Load Audio and the second left empty: **Conversation Tracks** splits it. One mixed "
        "mono track cannot be split by voice.\n"
        "- Each face's motion comes from its own track; **Calm Silence** lets it settle and listen in its "
        "speaker's pauses.\n"
        "- The second **Render Video** puts its face into the first one's video: each face keeps its own pixels, "
        "the rest of the picture is untouched, rendered batch by batch; more people: chain more.\n"
        f"- Weights in `models/anitalker/`: `stage1.ckpt`, `stage2_audio_only_hubert.ckpt` ({CKPTS}) and the "
        f"`chinese-hubert-large` folder ({HUBERT}).",
        {**common(encoder=HUBERT_ENCODER),
         "1": node("LoadImage", {"image": TWO_FACES}),
         "2": node("LoadAudio", {"audio": SPEAKERS[0]}),
         "30": node("LoadAudio", {"audio": SPEAKERS[1]}),
         "31": node("AniTalkerConversationTracks", {"audio": ["2", 0], "audio_2": ["30", 0]}),
         "6": node("AniTalkerLoadPortrait", {"image": ["1", 0], "renderer": ["3", 0], "face": 1}),
         "32": node("AniTalkerLoadPortrait", {"image": ["1", 0], "renderer": ["3", 0], "face": 2}),
         "7": node("AniTalkerAudioEncode", {"audio": ["31", 0], "audio_encoder": ["5", 0]}),
         "33": node("AniTalkerAudioEncode", {"audio": ["31", 1], "audio_encoder": ["5", 0]}),
         "8": sampler(),
         "34": node("AniTalkerDiffusionSampler", {"generator": ["4", 0], "portrait": ["32", 0],
                                                  "audio_features": ["33", 0], "steps": STEPS}),
         "25": node("AniTalkerMotionCalmSilence", {"motion": ["8", 0], "audio": ["31", 0]}),
         "35": node("AniTalkerMotionCalmSilence", {"motion": ["34", 0], "audio": ["31", 1]}),
         "24": node("AniTalkerRenderVideo", {"renderer": ["3", 0], "portrait": ["6", 0], "motion": ["25", 0],
                                             "audio": ["31", 0], "original": ["1", 0]}, "Render Video (face 1)"),
         "36": node("AniTalkerRenderVideo", {"renderer": ["3", 0], "portrait": ["32", 0], "motion": ["35", 0],
                                             "audio": ["31", 1], "original": ["24", 0]}, "Render Video (face 2)"),
         "21": save_video(["36", 0], "anitalker/conversation")},
    ),
    "anitalker_dub_video": Workflow(
        "AniTalker - dub a video",
        "### Dub a video\n"
        "New speech on footage you have: the face is followed through the shot, its head keeps moving as in the "
        "footage and its mouth says the speech. The result has the footage's size and frame rate.\n\n"
        "**Change first:** your footage in **Load Video** and your speech in **Load Audio**, then Run.\n\n"
        "- **Follow Face** finds the face (several: **face** 1 is the leftmost), follows it and takes the portrait "
        "from the frame it is clearest in; frames without the face stay as they are.\n"
        "- **Dub Motion**: footage shorter than the speech plays forward and back (**extend**); **continue_footage** "
        "lets longer footage go on with its own sound; **footage_audio** in Render Video keeps the footage's "
        "sound under the speech.\n"
        f"- Weights in `models/anitalker/`: `stage1.ckpt`, `stage2_audio_only_hubert.ckpt` ({CKPTS}) and the "
        f"`chinese-hubert-large` folder ({HUBERT}).",
        {
            "40": node("LoadVideo", {"file": FOOTAGE}),
            "2": node("LoadAudio", {"audio": SPEECH}),
            "3": node("AniTalkerLoadRenderer", {}),
            "4": node("AniTalkerLoadMotionGenerator", {}),
            "5": node("AniTalkerLoadAudioEncoder", {"encoder": HUBERT_ENCODER}),
            "41": node("AniTalkerFollowFace", {"renderer": ["3", 0], "video": ["40", 0]}),
            "7": node("AniTalkerAudioEncode", {"audio": ["2", 0], "audio_encoder": ["5", 0]}),
            "8": node("AniTalkerDiffusionSampler", {"generator": ["4", 0], "portrait": ["41", 0],
                                                    "audio_features": ["7", 0], "steps": STEPS}),
            "42": node("AniTalkerDubMotion", {"footage": ["41", 1], "motion": ["8", 0]}),
            "24": node("AniTalkerRenderVideo", {"renderer": ["3", 0], "portrait": ["41", 0], "motion": ["42", 0],
                                                "audio": ["2", 0], "original": ["40", 0]}),
            "21": save_video(["24", 0], "anitalker/dub"),
        },
    ),
}
