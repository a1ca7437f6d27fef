"""A real ComfyUI server for the end-to-end and browser tests, in a throw-away base directory.

The base directory holds this pack linked into custom_nodes, full-layout random-weight checkpoints (the fixture
rule), optionally a HuBERT of the real shape, a tiny upscale model and short excerpts of the sample media, so
the ComfyUI checkout (COMFYUI_DIR) is not modified. COMFYUI_PYTHON: the interpreter that has ComfyUI's
requirements (default: this one).
"""

from __future__ import annotations

import contextlib
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
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tests.support.golden import MEDIA, REPO, Checkpoints
from tests.support.image_models import write_upscaler

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
PACK_FOLDER = "anitalker-comfy"  # the name a git clone gets; ComfyUI lists the templates under it
SPEECH_SECONDS = 2.0
DRIVING_FRAMES = 30
UPSCALERS = ("RealESRGAN_x4plus.pth", "RealESRGAN_x2.pth")
"""The files the upscale workflow expects, today and in the first release (here each a tiny 2x stand-in)."""
LARGE_PICTURE = ("monalisa_1536.png", 1536)  # the sample portrait at a compositing size
TWO_FACES = ("anitalker_two_faces.jpg", (1024, 512))  # two sample portraits side by side: the conversation's picture
SPEAKERS = ("anitalker_speaker_1.wav", "anitalker_speaker_2.wav")
EXCERPTS = {"monalisa.jpg": "anitalker_monalisa.jpg", "statue.wav": "anitalker_statue.wav",
            "driving_talking_face.mp4": "anitalker_driving.mp4"}
"""Inputs under the names of the first release's graphs, and of today's workflows (the names of the samples the
pack copies into the input folder at start-up, which leaves these short excerpts in place)."""
RELEASED_INPUTS = {TWO_FACES[0]: "two_faces.png", SPEAKERS[0]: "speaker_1.wav", SPEAKERS[1]: "speaker_2.wav"}
"""The conversation's inputs under the names 0.4.0's graph gives them (today's are the samples' names)."""
TURN_SECONDS = 0.5
"""Speaker 1 talks for this long; speaker 2 is silent as long, then talks as long (its track is the longer)."""


@dataclass(frozen=True)
class Server:
    url: str
    base: Path
    log: Path
    samples: int  # length of the speech excerpt in samples
    pid: int = 0  # the server's process


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


def hubert_frames(samples: int) -> int:
    return ((samples - 400) // 320 + 1 + 1) // 2  # 50 Hz frames, one edge-padded frame, two per video frame


def mfcc_frames(samples: int) -> int:
    return (1 + math.ceil((samples - 400) / 160)) // 4


def make_base(base: Path, checkpoints: Checkpoints,
              stage2: tuple[str, ...] = ("hubert_audio_only", "mfcc_full_control"), hubert: bool = True,
              inputs: bool = True) -> int:
    """Fill a ComfyUI base directory, its models folder linked to ``checkpoints`` (the run's checkpoint files);
    returns the length in samples of the speech the workflows get. inputs=False leaves the input folder empty, as
    on a fresh install: the pack's start-up copy fills it with the samples."""
    for sub in ("custom_nodes", "input", "output", "temp", "user", "models/upscale_models"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    os.symlink(REPO, base / "custom_nodes" / PACK_FOLDER, target_is_directory=True)
    models = checkpoints.models_folder(base / "models" / "anitalker", stage2)
    if hubert:
        write_hubert(models / "chinese-hubert-large")
    for name in UPSCALERS:
        write_upscaler(base / "models" / "upscale_models" / name)
    if not inputs:
        with wave.open(str(REPO / "examples" / "statue.wav"), "rb") as speech:
            return speech.getnframes()
    shutil.copy(MEDIA / "monalisa.jpg", base / "input" / "monalisa.jpg")
    from PIL import Image

    name, side = LARGE_PICTURE
    Image.open(MEDIA / "monalisa.jpg").convert("RGB").resize((side, side), Image.BICUBIC).save(base / "input" / name)
    write_driving_excerpt(base / "input" / "driving_talking_face.mp4")
    write_conversation(base / "input")
    samples = write_speech_excerpt(base / "input" / "statue.wav")
    for old, new in EXCERPTS.items():
        shutil.copy(base / "input" / old, base / "input" / new)
    for new, old in RELEASED_INPUTS.items():
        shutil.copy(base / "input" / new, base / "input" / old)
    return samples


def write_conversation(folder: Path) -> None:
    """The conversation workflow's inputs: a picture of two faces and a track per speaker, taking turns."""
    from PIL import Image

    name, (width, height) = TWO_FACES
    halves = [Image.open(MEDIA / n).convert("RGB").resize((width // 2, height), Image.BICUBIC)
              for n in ("monalisa.jpg", "statue.jpg")]
    picture = Image.new("RGB", (width, height))
    for i, half in enumerate(halves):
        picture.paste(half, (i * width // 2, 0))
    picture.save(folder / name)
    with wave.open(str(MEDIA / "statue.wav"), "rb") as src:
        params, turn = src.getparams(), int(TURN_SECONDS * src.getframerate())
        speech = src.readframes(turn)
    silence = bytes(len(speech))
    for name, frames in zip(SPEAKERS, (speech, silence + speech)):
        with wave.open(str(folder / name), "wb") as dst:
            dst.setparams(params)
            dst.writeframes(frames)


@contextlib.contextmanager
def running_server(base: Path, samples: int, front_end_root: str | None = None) -> Iterator[Server]:
    """``main.py --cpu`` on a free port for the base directory; stopped on exit. front_end_root: a frontend other
    than the one the checkout pins (ComfyUI's --front-end-root, e.g. a newer comfyui-frontend-package's static/)."""
    port = free_port()
    log_path = base / "server.log"
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    frontend = ["--front-end-root", front_end_root] if front_end_root else []
    with open(log_path, "w") as log:
        proc = subprocess.Popen([python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
                                 "--base-directory", str(base), "--disable-auto-launch", *frontend],
                                cwd=COMFYUI_DIR, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(240):
                if proc.poll() is not None:
                    raise RuntimeError(f"ComfyUI exited early:\n{log_path.read_text()[-3000:]}")
                try:
                    urllib.request.urlopen(url + "/system_stats", timeout=2)
                    break
                except OSError:
                    time.sleep(0.5)
            else:
                raise RuntimeError("ComfyUI did not start within 120 s")
            yield Server(url, base, log_path, samples, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


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


def dequeued(server: Server, prompt_ids: list[str], timeout: float = 900) -> None:
    """Wait until none of these prompts is queued or running any more."""
    deadline = time.time() + timeout
    while any(item[1] in prompt_ids for items in get(server.url, "/queue").values() for item in items):
        if time.time() > deadline:
            raise AssertionError(f"graphs taken off the queue are still queued after {timeout} s")
        time.sleep(1)


def run_workflow(server: Server, graph: dict, timeout: float = 900) -> dict:
    prompt_id = post(server.url, "/prompt", {"prompt": graph, "client_id": str(uuid.uuid4())})["prompt_id"]
    return finished(server, prompt_id, timeout)


def ended(server: Server, prompt_id: str, timeout: float = 60) -> dict:
    """The history entry of a prompt once it has ended, however (ComfyUI stores it a moment after it tells the
    websocket)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        history = get(server.url, f"/history/{prompt_id}")
        if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
            return history[prompt_id]
        time.sleep(0.25)
    raise AssertionError(f"prompt {prompt_id} has not ended after {timeout} s")


def finished(server: Server, prompt_id: str, timeout: float = 900) -> dict:
    """The history entry of a posted prompt once it completed successfully."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        history = get(server.url, f"/history/{prompt_id}")
        if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
            entry = history[prompt_id]
            if entry["status"].get("status_str") == "success":
                return entry
            raise AssertionError(f"workflow failed: {json.dumps(entry['status'])[:3000]}\n"
                                 f"{server.log.read_text()[-3000:]}")
        time.sleep(1)
    raise AssertionError("workflow timed out")
