"""End to end in a real ComfyUI server: every API workflow in workflows/api, posted over HTTP.

Runs only when COMFYUI_DIR points at a ComfyUI checkout (COMFYUI_PYTHON: the interpreter that has its
requirements, default this one). A throw-away base directory holds the linked pack, generated full-layout
checkpoints (random weights by the fixture rule), a HuBERT of the real shape, a small upscale model and short
excerpts of the shared media, so the checkout itself is not modified.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import wave
from pathlib import Path

import pytest

from golden import MEDIA, REPO, write_stage1, write_stage2

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
pytestmark = pytest.mark.skipif(not COMFYUI_DIR, reason="set COMFYUI_DIR to a ComfyUI checkout to run the server test")

SPEECH_SECONDS = 2.0
DRIVING_FRAMES = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_speech_excerpt(path: Path) -> int:
    with wave.open(str(MEDIA / "statue.wav"), "rb") as src, wave.open(str(path), "wb") as dst:
        dst.setparams(src.getparams())
        dst.writeframes(src.readframes(int(SPEECH_SECONDS * src.getframerate())))
        return int(SPEECH_SECONDS * src.getframerate())


def write_driving_excerpt(path: Path) -> None:
    import av

    with av.open(str(MEDIA / "driving_talking_face.mp4")) as src, av.open(str(path), "w") as dst:
        stream = dst.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 256, 256, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i >= DRIVING_FRAMES:
                break
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)


def write_hubert(folder: Path) -> None:
    """A randomly initialised HuBERT with the real interface (25 hidden states of 1024), but thin layers."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    config = HubertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=64,
                          conv_dim=(32,) * 7, do_stable_layer_norm=True, feat_extract_norm="layer",
                          num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=16)
    HubertModel(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)


def write_upscaler(path: Path) -> None:
    """A tiny 2x Real-ESRGAN 'compact' network (spandrel recognises it from its keys)."""
    import torch

    g = torch.Generator().manual_seed(0)
    feats, convs = 8, 2
    sd = {"body.0.weight": torch.randn(feats, 3, 3, 3, generator=g) * 0.1, "body.0.bias": torch.zeros(feats),
          "body.1.weight": torch.full((feats,), 0.25)}
    i = 2
    for _ in range(convs):
        sd[f"body.{i}.weight"] = torch.randn(feats, feats, 3, 3, generator=g) * 0.1
        sd[f"body.{i}.bias"] = torch.zeros(feats)
        sd[f"body.{i + 1}.weight"] = torch.full((feats,), 0.25)
        i += 2
    sd[f"body.{i}.weight"] = torch.randn(3 * 4, feats, 3, 3, generator=g) * 0.01
    sd[f"body.{i}.bias"] = torch.zeros(3 * 4)
    torch.save(sd, path)


def hubert_frames(samples: int) -> int:
    return ((samples - 400) // 320 + 1 + 1) // 2  # 50 Hz frames, one edge-padded frame, two per video frame


def mfcc_frames(samples: int) -> int:
    return (1 + math.ceil((samples - 400) / 160)) // 4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_base")
    for sub in ("custom_nodes", "input", "output", "temp", "user", "models/anitalker", "models/upscale_models"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    os.symlink(REPO, base / "custom_nodes" / "anitalker-comfy", target_is_directory=True)
    models = base / "models" / "anitalker"
    write_stage1(models / "stage1.ckpt", prefix="lia.")
    write_stage2(models / "stage2_audio_only_hubert.ckpt", "hubert_audio_only")
    write_stage2(models / "stage2_full_control_mfcc.ckpt", "mfcc_full_control")
    write_hubert(models / "chinese-hubert-large")
    write_upscaler(base / "models" / "upscale_models" / "RealESRGAN_x2.pth")
    samples = write_speech_excerpt(base / "input" / "statue.wav")
    shutil.copy(MEDIA / "monalisa.jpg", base / "input" / "monalisa.jpg")
    write_driving_excerpt(base / "input" / "driving_talking_face.mp4")
    port = free_port()
    log = open(base / "server.log", "w")
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    proc = subprocess.Popen([python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
                             "--base-directory", str(base), "--disable-auto-launch"],
                            cwd=COMFYUI_DIR, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                pytest.fail(f"ComfyUI exited early:\n{(base / 'server.log').read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url + "/system_stats", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("ComfyUI did not start within 120 s")
        yield {"url": url, "base": base, "samples": samples, "log": base / "server.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def post(url: str, path: str, payload: dict) -> dict:
    req = urllib.request.Request(url + path, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        raise AssertionError(f"{path} -> HTTP {e.code}: {e.read().decode()[:3000]}") from e


def get(url: str, path: str) -> dict:
    with urllib.request.urlopen(url + path, timeout=30) as r:
        return json.loads(r.read())


def run_workflow(server, graph: dict, timeout: float = 900) -> dict:
    prompt_id = post(server["url"], "/prompt", {"prompt": graph, "client_id": str(uuid.uuid4())})["prompt_id"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        history = get(server["url"], f"/history/{prompt_id}")
        if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
            entry = history[prompt_id]
            if entry["status"].get("status_str") == "success":
                return entry
            raise AssertionError(f"workflow failed: {json.dumps(entry['status'])[:3000]}\n"
                                 f"{server['log'].read_text()[-3000:]}")
        time.sleep(1)
    raise AssertionError("workflow timed out")


def saved_videos(entry: dict, base: Path) -> list[Path]:
    found = []
    for out in entry["outputs"].values():
        for key in ("images", "video", "videos", "animated"):
            for item in out.get(key, []) or []:
                if isinstance(item, dict) and item.get("filename", "").endswith(".mp4"):
                    found.append(base / "output" / item.get("subfolder", "") / item["filename"])
    return found


def count_frames(path: Path) -> tuple[int, bool, tuple[int, int]]:
    import av

    with av.open(str(path)) as c:
        n = sum(1 for _ in c.decode(video=0))
        s = c.streams.video[0]
        return n, bool(c.streams.audio), (s.width, s.height)


WORKFLOWS = sorted((REPO / "workflows" / "api").glob("*.json"))


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[w.stem for w in WORKFLOWS])
def test_api_workflow_runs_and_frame_count_matches_audio(server, workflow):
    graph = json.loads(workflow.read_text())
    entry = run_workflow(server, graph)
    videos = saved_videos(entry, server["base"])
    assert videos, f"no mp4 in the outputs: {entry['outputs']}"
    frames, has_audio, size = count_frames(videos[0])
    kinds = {node["class_type"] for node in graph.values()}
    if "AniTalkerMotionExtract" in kinds:
        expected = DRIVING_FRAMES
    elif any("hubert" in str(node["inputs"].get("ckpt_name", "")) for node in graph.values()):
        expected = hubert_frames(server["samples"])
    else:
        expected = mfcc_frames(server["samples"])
    assert frames == expected, (frames, expected)
    if "AniTalkerMotionExtract" not in kinds:  # audio-driven: 25 frames per second of speech, audio muxed
        assert abs(frames - 25 * SPEECH_SECONDS) <= 2
        assert has_audio
    if "AniTalkerPasteBack" in kinds:
        assert size == (512, 512)  # pasted back into the 512x512 original


def test_interrupt_stops_rendering_and_server_keeps_working(server):
    graph = json.loads((REPO / "workflows" / "api" / "anitalker_mfcc_pose_control.json").read_text())
    graph["8"]["inputs"]["seed"] = 12345  # a new prompt, not served from the cache
    prompt_id = post(server["url"], "/prompt", {"prompt": graph, "client_id": "x"})["prompt_id"]
    time.sleep(8)
    post(server["url"], "/interrupt", {})
    t0 = time.time()
    while time.time() - t0 < 60:
        history = get(server["url"], f"/history/{prompt_id}")
        if prompt_id in history and history[prompt_id]["status"].get("completed") is not None:
            break
        time.sleep(0.25)
    assert time.time() - t0 < 15
    assert get(server["url"], "/system_stats")
