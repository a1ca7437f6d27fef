"""Writes the example workflows in both ComfyUI formats from one definition each.

    python workflows/build.py        # regenerates workflows/api/*.json, workflows/ui/*.json, example_workflows/

API format (for scripts and the end-to-end test) maps node ids to {"class_type", "inputs"}; UI format is the
graph the editor opens (also served as templates from example_workflows/). Each input value is either a
literal (a widget) or ["<node id>", <output slot>] (a link).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Core ComfyUI nodes used here: (inputs as (name, type, is_widget)), (outputs as (name, type)).
CORE = {
    "LoadImage": ([("image", "COMBO", True)], [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    "LoadAudio": ([("audio", "COMBO", True)], [("AUDIO", "AUDIO")]),
    "LoadVideo": ([("file", "COMBO", True)], [("VIDEO", "VIDEO")]),
    "GetVideoComponents": ([("video", "VIDEO", False)], [("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT")]),
    "CreateVideo": ([("images", "IMAGE", False), ("audio", "AUDIO", False), ("fps", "FLOAT", True)],
                    [("VIDEO", "VIDEO")]),
    "SaveVideo": ([("video", "VIDEO", False), ("filename_prefix", "STRING", True), ("format", "COMBO", True),
                   ("codec", "COMBO", True)], []),
    "SaveImage": ([("images", "IMAGE", False), ("filename_prefix", "STRING", True)], []),
    "UpscaleModelLoader": ([("model_name", "COMBO", True)], [("UPSCALE_MODEL", "UPSCALE_MODEL")]),
    "ImageUpscaleWithModel": ([("upscale_model", "UPSCALE_MODEL", False), ("image", "IMAGE", False)],
                              [("IMAGE", "IMAGE")]),
}

PORTRAIT = "monalisa.jpg"
SPEECH = "statue.wav"
DRIVING = "driving_talking_face.mp4"


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
        "20": ("CreateVideo", {"images": images, "audio": audio, "fps": 25.0}),
        "21": ("SaveVideo", {"video": ["20", 0], "filename_prefix": prefix, "format": "mp4", "codec": "h264"}),
    }


def render(motion, node="9") -> dict:
    return {node: ("AniTalkerRenderFrames", {"renderer": ["3", 0], "portrait": ["6", 0], "motion": motion,
                                             "batch_size": 0, "take": 0})}


WORKFLOWS = {
    "anitalker_audio_hubert": {
        **common("stage2_audio_only_hubert.ckpt", "chinese-hubert-large"),
        "8": sampler(), **render(["8", 0]), **video(["9", 0], ["2", 0], "anitalker/hubert"),
    },
    "anitalker_mfcc_pose_control": {
        **common("stage2_full_control_mfcc.ckpt", "mfcc (built in, no download)"),
        "10": ("AniTalkerVarianceControl", {"yaw": 0.0, "pitch": 0.0, "roll": 0.0, "face_location": 0.5,
                                            "face_scale": 0.5, "keyframes": "0: yaw=-15 pitch=0\n2s: yaw=15 pitch=5\n4s: yaw=0"}),
        "8": sampler(control=["10", 0]), **render(["8", 0]), **video(["9", 0], ["2", 0], "anitalker/mfcc_pose"),
    },
    "anitalker_video_driven": {
        "1": ("LoadImage", {"image": PORTRAIT}),
        "3": ("AniTalkerLoadRenderer", {"ckpt_name": "stage1.ckpt", "device": "auto", "precision": "auto"}),
        "6": ("AniTalkerLoadPortrait", {"image": ["1", 0], "renderer": ["3", 0], "crop_mode": "auto", "margin": 0.65,
                                        "box_x": 0, "box_y": 0, "box_size": 512}),
        "11": ("LoadVideo", {"file": DRIVING}),
        "12": ("GetVideoComponents", {"video": ["11", 0]}),
        "13": ("AniTalkerMotionExtract", {"renderer": ["3", 0], "driving_frames": ["12", 0], "portrait": ["6", 0],
                                          "mode": "relative"}),
        **render(["13", 0]), **video(["9", 0], ["12", 1], "anitalker/video_driven"),
    },
    "anitalker_audio_upscale_mp4": {
        **common("stage2_audio_only_hubert.ckpt", "chinese-hubert-large"),
        "8": sampler(), **render(["8", 0]),
        "14": ("UpscaleModelLoader", {"model_name": "RealESRGAN_x2.pth"}),
        "15": ("ImageUpscaleWithModel", {"upscale_model": ["14", 0], "image": ["9", 0]}),
        "16": ("AniTalkerPasteBack", {"original": ["1", 0], "frames": ["15", 0], "portrait": ["6", 0], "feather": 0.1}),
        **video(["16", 0], ["2", 0], "anitalker/upscaled"),
    },
    "anitalker_compare_takes": {
        **common("stage2_full_control_mfcc.ckpt", "mfcc (built in, no download)"),
        "8": sampler(takes=2),
        "17": ("AniTalkerSelectTake", {"motion": ["8", 0], "index": 0}),
        "18": ("AniTalkerMotionSmooth", {"motion": ["17", 0], "strength": 1.5}),
        "19": ("AniTalkerMotionStrength", {"motion": ["18", 0], "strength": 1.0, "head": 0.6, "mouth": 1.0}),
        **render(["17", 0], "9"), **render(["19", 0], "22"),
        "23": ("AniTalkerSideBySide", {"left": ["9", 0], "right": ["22", 0]}),
        **video(["23", 0], ["2", 0], "anitalker/compare"),
    },
}


def node_spec(class_type: str):
    """(inputs [(name, type, is_widget)], outputs [(name, type)]) from our schemas or the core table."""
    if class_type in CORE:
        return CORE[class_type]
    sys.path.insert(0, str(ROOT / "tests"))
    from comfy_pack import load_pack

    pack = load_pack()
    for cls in pack.nodes.NODES:
        schema = cls.define_schema()
        if schema.node_id == class_type:
            ins = [(i.id, i.get_io_type(), i.get_io_type() in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"))
                   for i in schema.inputs]
            outs = [(o.display_name or o.get_io_type(), o.get_io_type()) for o in schema.outputs]
            return ins, outs
    raise KeyError(class_type)


def to_api(graph: dict) -> dict:
    return {nid: {"class_type": ct, "inputs": inputs} for nid, (ct, inputs) in graph.items()}


def to_ui(graph: dict) -> dict:
    nodes, links = [], []
    ids = {nid: int(nid) for nid in graph}
    out_links: dict[tuple[int, int], list[int]] = {}
    for nid, (ct, inputs) in graph.items():
        for name, value in inputs.items():
            if isinstance(value, list):
                out_links.setdefault((ids[value[0]], value[1]), [])
    link_id = 0
    pending = []
    for order, (nid, (ct, inputs)) in enumerate(graph.items()):
        ins, outs = node_spec(ct)
        ui_inputs, widgets = [], []
        for name, typ, is_widget in ins:
            value = inputs.get(name)
            if isinstance(value, list):
                link_id += 1
                src = ids[value[0]]
                src_type = node_spec(graph[value[0]][0])[1][value[1]][1]
                links.append([link_id, src, value[1], ids[nid], len(ui_inputs), src_type])
                out_links[(src, value[1])].append(link_id)
                entry = {"name": name, "type": typ, "link": link_id}
                if is_widget:
                    entry["widget"] = {"name": name}
                ui_inputs.append(entry)
            elif not is_widget:
                ui_inputs.append({"name": name, "type": typ, "link": None})
            if is_widget and not isinstance(value, list):
                widgets.append(value)
                if name == "seed":
                    widgets.append("fixed")  # control_after_generate
        pending.append((nid, ct, ui_inputs, outs, widgets, order))
    for nid, ct, ui_inputs, outs, widgets, order in pending:
        col, row = order % 4, order // 4
        nodes.append({
            "id": ids[nid], "type": ct, "pos": [40 + 360 * col, 40 + 320 * row], "size": [320, 260], "flags": {},
            "order": order, "mode": 0, "inputs": ui_inputs,
            "outputs": [{"name": name, "type": typ, "links": out_links.get((ids[nid], slot), []), "slot_index": slot}
                        for slot, (name, typ) in enumerate(outs)],
            "properties": {"Node name for S&R": ct}, "widgets_values": widgets,
        })
    return {"last_node_id": max(ids.values()), "last_link_id": link_id, "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {}, "version": 0.4}


def main() -> None:
    for sub in ("api", "ui"):
        (ROOT / "workflows" / sub).mkdir(parents=True, exist_ok=True)
    (ROOT / "example_workflows").mkdir(exist_ok=True)
    for name, graph in WORKFLOWS.items():
        api = json.dumps(to_api(graph), indent=2) + "\n"
        ui = json.dumps(to_ui(graph), indent=2) + "\n"
        (ROOT / "workflows" / "api" / f"{name}.json").write_text(api)
        (ROOT / "workflows" / "ui" / f"{name}.json").write_text(ui)
        (ROOT / "example_workflows" / f"{name}.json").write_text(ui)


if __name__ == "__main__":
    main()
