"""End to end in a real ComfyUI server: every API workflow in workflows/api, and the graphs saved against earlier
releases (tests/fixtures/workflows), posted over HTTP unchanged.

Runs only when COMFYUI_DIR points at a ComfyUI checkout (COMFYUI_PYTHON: the interpreter that has its
requirements, default this one). A throw-away base directory holds the linked pack, generated full-layout
checkpoints (random weights by the fixture rule), a HuBERT of the real shape, a small upscale model, a
random-weight GFPGAN in models/facerestore_models and short excerpts of the sample media, so the checkout itself
is not modified.
"""

from __future__ import annotations

import json
import shutil
import uuid
import wave
from pathlib import Path

import pytest
from tests.support.comfy_server import (COMFYUI_DIR, DRIVING_FRAMES, LARGE_PICTURE, SPEAKERS, SPEECH_SECONDS,
                                        TURN_SECONDS, TWO_FACES, dequeued, ended, finished, get,
                                        hubert_frames, make_base, mfcc_frames, post, run_workflow, running_server)
from tests.support.golden import FIXTURES, MEDIA, REPO

pytestmark = pytest.mark.skipif(not COMFYUI_DIR, reason="set COMFYUI_DIR to a ComfyUI checkout to run the server test")


FACE_MODEL = "GFPGANv1.4.pth"  # the file the full-picture workflow's (bypassed) Load Face Model names
FACE_PICTURE = "aiface7.png"  # 684x684: a pasted video of its size is told apart from the 512x512 face
FACE_SPEECH, FACE_SPEECH_SECONDS = "short.wav", 0.08  # 2 frames: GFPGAN costs seconds a frame on a CPU


@pytest.fixture(scope="module")
def server(tmp_path_factory, checkpoints, gfpgan_file):
    base = tmp_path_factory.mktemp("comfy_base")
    samples = make_base(base, checkpoints)
    faces = base / "models" / "facerestore_models"  # the folder other face-restore packs use
    faces.mkdir()
    (faces / FACE_MODEL).symlink_to(gfpgan_file)
    shutil.copy(MEDIA / FACE_PICTURE, base / "input" / FACE_PICTURE)
    with wave.open(str(base / "input" / "statue.wav"), "rb") as src, \
            wave.open(str(base / "input" / FACE_SPEECH), "wb") as dst:
        dst.setparams(src.getparams())
        dst.writeframes(src.readframes(int(FACE_SPEECH_SECONDS * src.getframerate())))
        assert hubert_frames(int(FACE_SPEECH_SECONDS * src.getframerate())) == 2
    with running_server(base, samples) as running:
        yield running


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


def saved_sequence(base: Path) -> tuple[int, bool, tuple[int, int]]:
    """The one image sequence Save Frames wrote: its frame count, whether audio.wav is there, and its size; every
    image 16-bit RGBA with an alpha (the head's matte) that is neither all 0 nor all 1."""
    import cv2
    import numpy as np

    sidecars = list((base / "output").rglob("sequence.json"))
    assert len(sidecars) == 1, sidecars
    folder = sidecars[0].parent
    images = sorted(folder.glob("*.png"))
    side = json.loads(sidecars[0].read_text())
    assert side["frames"]["count"] == len(images) and images[0].name.endswith(f"_{side['frames']['first']:06d}.png")
    for path in images:
        rgba = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert rgba.dtype == np.uint16 and rgba.shape[2] == 4, (path, rgba.dtype, rgba.shape)
        assert rgba[..., 3].min() == 0 and rgba[..., 3].max() == 65535  # neither all 0 nor all 1
    return len(images), (folder / "audio.wav").is_file(), (rgba.shape[1], rgba.shape[0])


def frame_rate(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        return float(c.streams.video[0].average_rate)


EARLIER = FIXTURES / "workflows"
FIRST_RELEASE = sorted((EARLIER / "0.1.0" / "api").glob("*.json")) + sorted((EARLIER / "0.1.0" / "user").glob("*.json"))
"""Graphs saved against the first release: its example workflows and graphs a user wrote against its /object_info."""
LATER = sorted(p for p in EARLIER.glob("*/api/*.json") if p.parts[-3] != "0.1.0")
"""The example workflows of the later releases: today's, but for the generator's removed precision input, which
the first release's graphs carry too."""
WORKFLOWS = sorted((REPO / "workflows" / "api").glob("*.json"))


def makes_video(path: Path) -> bool:
    return any(node["class_type"] == "SaveVideo" for node in json.loads(path.read_text()).values())


CONVERSATION = REPO / "workflows" / "api" / "anitalker_conversation.json"  # its own test, below
RUN = [w for w in WORKFLOWS if w != CONVERSATION] + [p for p in FIRST_RELEASE if makes_video(p)]


def name_of(path: Path) -> str:
    return path.relative_to(EARLIER).with_suffix("").as_posix() if path.is_relative_to(EARLIER) else path.stem


@pytest.mark.parametrize("workflow", RUN, ids=[name_of(w) for w in RUN])
def test_api_workflow_runs_and_frame_count_matches_audio(server, workflow):
    graph = json.loads(workflow.read_text())
    kinds = {node["class_type"] for node in graph.values()}
    sequence = "AniTalkerSaveFrames" in kinds
    if sequence:  # frames for compositing: pasted back into a 1536x1536 picture
        picture = next(node for node in graph.values() if node["class_type"] == "LoadImage")
        picture["inputs"]["image"] = LARGE_PICTURE[0]
    entry = run_workflow(server, graph)
    if sequence:
        frames, has_audio, size = saved_sequence(server.base)
    else:
        videos = saved_videos(entry, server.base)
        assert videos, f"no mp4 in the outputs: {entry['outputs']}"
        frames, has_audio, size = count_frames(videos[0])
    if "AniTalkerMotionExtract" in kinds:
        expected = DRIVING_FRAMES
    elif any("hubert" in str(node["inputs"].get("ckpt_name", "")) for node in graph.values()):
        expected = hubert_frames(server.samples)
    else:
        expected = mfcc_frames(server.samples)
    assert frames == expected, (frames, expected)
    if "AniTalkerMotionExtract" not in kinds:  # audio-driven: 25 frames per second of speech, audio muxed
        assert abs(frames - 25 * SPEECH_SECONDS) <= 2
        assert has_audio
    if sequence:
        assert size == (LARGE_PICTURE[1],) * 2
    elif "AniTalkerFollowFace" in kinds:  # a dub: the footage's size and rate (the driving excerpt's)
        assert size == (256, 256) and frame_rate(videos[0]) == 25
    elif kinds & {"AniTalkerPasteBack", "AniTalkerRenderVideo"}:
        assert size == (512, 512)  # pasted back into the 512x512 original (the upscaled crop alone is larger)


def test_first_release_graphs_without_a_video_run(server):
    """A user's graphs against the first release that end in Save Image and Save Motion, posted unchanged."""
    images = run_workflow(server, json.loads((EARLIER / "0.1.0" / "user" / "paste_back_images.json").read_text()))
    saved = [i for out in images["outputs"].values() for i in out.get("images", []) if i["type"] == "output"]
    assert len(saved) == mfcc_frames(server.samples) and saved[0]["subfolder"] == "anitalker"  # one per frame
    assert all((server.base / "output" / i["subfolder"] / i["filename"]).is_file() for i in saved)
    run_workflow(server, json.loads((EARLIER / "0.1.0" / "user" / "edit_and_save_motion.json").read_text()))
    assert list((server.base / "output" / "anitalker_motion" / "anitalker").glob("blended_*.safetensors"))


def test_later_releases_graphs_are_accepted(server):
    """Each is validated and queued as a script posts it, then taken off the queue: it is a workflow the tests run
    but for the removed precision input (0.2.0's keyframes workflow also has a node fewer). A graph that runs
    meanwhile keeps the queue busy, so none starts before it is taken off; one that started anyway must succeed."""
    blocker = json.loads(FIRST_RELEASE[0].read_text())
    blocker["8"]["inputs"]["seed"] = 4242  # a new prompt, not served from the cache
    busy = post(server.url, "/prompt", {"prompt": blocker, "client_id": str(uuid.uuid4())})["prompt_id"]
    posted = []
    for path in LATER:
        reply = post(server.url, "/prompt", {"prompt": json.loads(path.read_text()), "client_id": str(uuid.uuid4())})
        assert reply.get("node_errors") == {}, (path, reply)
        post(server.url, "/queue", {"delete": [reply["prompt_id"]]})
        posted.append(reply["prompt_id"])
    finished(server, busy)
    dequeued(server, posted)
    for prompt_id in posted:
        if get(server.url, f"/history/{prompt_id}"):
            finished(server, prompt_id)


def test_interrupt_stops_rendering_and_server_keeps_working(server):
    """Cancel pressed while Render Frames is under way (its progress seen on the websocket, as the UI sees it)
    ends the prompt interrupted, not completed: the batch under way may finish, no batch starts after it, and the
    server goes on serving."""
    graph = json.loads((REPO / "workflows" / "api" / "anitalker_mfcc_pose_control.json").read_text())
    graph["8"]["inputs"]["seed"] = 12345  # a new prompt, not served from the cache
    prompt_id, run = cancelled_run(server, graph, node="9", until_value=1)
    assert_stopped(server, prompt_id, run)


def cancelled_run(server, graph: dict, node: str, until_value: int) -> tuple[str, dict]:
    """Post ``graph``, press Cancel once ``node`` reported progress ``until_value`` on the websocket (the way the
    web UI follows a run), and follow the run to its end: (prompt_id, {"before": values, "after": values reported
    after Cancel, "total": the node's total, "ended": the message that ended the run})."""
    import asyncio

    import aiohttp

    client_id = str(uuid.uuid4())

    async def follow():
        run = {"before": [], "after": [], "total": None, "ended": None}
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(server.url.replace("http", "ws") + f"/ws?clientId={client_id}") as ws:
                prompt_id = post(server.url, "/prompt", {"prompt": graph, "client_id": client_id})["prompt_id"]
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    data = json.loads(msg.data)
                    kind = data.get("type")
                    if kind == "progress" and data["data"].get("node") == node:
                        run["total"] = data["data"]["max"]
                        cancelled = run["before"] and run["before"][-1] >= until_value
                        run["after" if cancelled else "before"].append(data["data"]["value"])
                        if not cancelled and data["data"]["value"] >= until_value:
                            post(server.url, "/interrupt", {})
                    if kind in ("execution_error", "execution_success", "execution_interrupted"):
                        run["ended"] = kind
                        return prompt_id, run
        raise AssertionError("the websocket closed")

    return asyncio.run(asyncio.wait_for(follow(), timeout=600))


def assert_stopped(server, prompt_id: str, run: dict) -> None:
    """Cancel ended the run early and the server goes on. That no batch starts once the flag is seen is
    tests/test_faults.py's; here the flag reaches the worker when the server has handled the request, a batch or two
    later, so only 'before the end' is checked."""
    assert run["ended"] == "execution_interrupted", run
    assert max(run["before"] + run["after"]) < run["total"], run  # it stopped before the end
    status = ended(server, prompt_id)["status"]
    assert status["status_str"] != "success", status
    assert get(server.url, "/system_stats")  # still serving


def test_cancel_while_render_video_saves_stops_between_batches_and_leaves_no_file(server):
    """Save Video renders the VIDEO batch by batch; Cancel in the middle stops it and no mp4 is left."""
    graph = json.loads((REPO / "workflows" / "api" / "anitalker_audio_upscale_mp4.json").read_text())
    graph["8"]["inputs"]["seed"] = 777  # a new prompt, not served from the cache
    graph["21"]["inputs"]["filename_prefix"] = "anitalker/cancelled"
    prompt_id, run = cancelled_run(server, graph, node="21", until_value=4)
    assert_stopped(server, prompt_id, run)
    output = server.base / "output"
    assert not list(output.rglob("cancelled*")), list(output.rglob("cancelled*"))
    assert not list(output.rglob("*.partial*"))


def test_a_gfpgan_from_load_upscale_model_gives_a_512_face_or_the_pictures_size_with_the_audio(server):
    """Load Upscale Model lists a GFPGAN-architecture file from models/facerestore_models; Render Video restores
    the head with it: without the picture the video is the 512x512 face, with the picture (and an upscaler after the
    face model) it has the picture's size. 25 fps, with the audio."""
    graph = json.loads((REPO / "workflows" / "api" / "anitalker_audio_upscale_mp4.json").read_text())
    graph["1"]["inputs"]["image"] = FACE_PICTURE
    graph["2"]["inputs"]["audio"] = FACE_SPEECH
    graph["30"] = {"class_type": "UpscaleModelLoader", "inputs": {"model_name": FACE_MODEL}}
    pasted = dict(graph["24"]["inputs"], face_model=["30", 0], batch_size=1)  # plus the upscaler and the picture
    face_only = {k: v for k, v in pasted.items() if k not in ("original", "upscale_model")}
    graph["24"]["inputs"] = face_only
    graph["21"]["inputs"]["filename_prefix"] = "anitalker/face_only"
    graph["31"] = {"class_type": "AniTalkerRenderVideo", "inputs": pasted}
    graph["32"] = {"class_type": "SaveVideo", "inputs": dict(graph["21"]["inputs"], video=["31", 0],
                                                              filename_prefix="anitalker/face_pasted")}
    entry = run_workflow(server, graph)
    videos = {v.name.split("_")[1]: v for v in saved_videos(entry, server.base)}
    assert set(videos) == {"only", "pasted"}, videos
    for kind, size in (("only", (512, 512)), ("pasted", (684, 684))):
        frames, has_audio, found = count_frames(videos[kind])
        assert (frames, has_audio, found) == (2, True, size), (kind, frames, has_audio, found)
        assert frame_rate(videos[kind]) == 25


def test_two_faces_talk_in_turn_in_one_picture_with_both_voices(server):
    """The conversation workflow: a 1024x512 picture of two faces, Load Portrait face 1 and 2, speaker 1 talking in
    the first half and speaker 2 in the second, two chained Render Videos -> Save Video: a 1024x512, 25 fps video
    as long as the longer track, with audio; both face regions change over the clip and the corners, away from both
    heads, stay within encoder noise of the picture."""
    import av
    import numpy as np
    from PIL import Image

    entry = run_workflow(server, json.loads(CONVERSATION.read_text()))
    (video,) = saved_videos(entry, server.base)
    frames, has_audio, size = count_frames(video)
    with wave.open(str(server.base / "input" / SPEAKERS[1]), "rb") as longer:
        assert frames == hubert_frames(longer.getnframes()) and abs(frames - 25 * 2 * TURN_SECONDS) <= 2
    assert has_audio and size == TWO_FACES[1] and frame_rate(video) == 25
    with av.open(str(video)) as c:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(np.float32)
    picture = np.asarray(Image.open(server.base / "input" / TWO_FACES[0]).convert("RGB")).astype(np.float32)
    for x in (256, 768):  # the middle of each face: it moves over the clip
        face = decoded[:, 200:300, x - 50: x + 50]
        assert float(np.abs(face - face[:1]).mean(axis=(1, 2, 3)).max()) > 2, x
    for ys, xs in ((slice(0, 24), slice(0, 24)), (slice(0, 24), slice(1000, 1024)), (slice(488, 512), slice(0, 24)),
                   (slice(488, 512), slice(1000, 1024))):
        assert float(np.abs(decoded[:, ys, xs] - picture[ys, xs]).mean()) < 3, (ys, xs)
