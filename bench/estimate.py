"""The run estimate against measured runs: time and peak memory, predicted before the work and measured after it.

    python -m bench.estimate --seconds 2 5 --size 0 1024        # CPU; raw result in bench/results/estimate-*.json

Each case runs in its own process. *headless*: `anitalker animate` with the hubert_audio_only generator (a HuBERT
of chinese-hubert-large's real size, random weights like bench/memory.py, so nothing is downloaded) writes an
mp4, pasted back into a SIZE x SIZE portrait (SIZE 0: the 256x256 crop). *nodes*: Render Frames then Paste Back
into the SIZE x SIZE portrait, as IMAGE batches, through the same core calls as the nodes. The estimate is taken
where the command and the nodes take it; right after it the process's peak-RSS mark is reset
(/proc/self/clear_refs, Linux), so the measured peak (VmHWM) is the run's own and not the model loading's, and the
measured time runs from the end of the estimate to the end of the work.
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

from tests.support import peak_memory


class Watch:
    """Catches each estimate as it is made. The run it announces is timed, and its peak memory taken, from the end
    of the estimate, or from ``begin()`` when the run goes on from the estimate's warm-up (Render Frames)."""

    def __init__(self) -> None:
        from anitalker_core import pipeline

        # the headless command's Animation makes its estimate through this name
        self.estimate, self.real, self.runs, self.began = None, pipeline.run_estimate, [], False
        pipeline.run_estimate = self

    def begin(self) -> None:
        peak_memory.reset_peak()
        self.start, self.began = time.perf_counter(), True

    def __call__(self, steps, device):
        self.estimate = self.real(steps, device)
        if not self.began:
            self.begin()
        self.began = False
        return self.estimate

    def done(self, case: str) -> dict:
        seconds, peak = time.perf_counter() - self.start, peak_memory.peak_rss()
        e = self.estimate
        parts = {p.name: round(p.seconds, 2) for s in e.steps for p in s.parts}
        run = {"case": case, "estimated_s": round(e.seconds, 2), "measured_s": round(seconds, 2),
               "time_ratio": round(seconds / e.seconds, 3), "estimated_parts_s": parts,
               "in_use_mb": round(e.host_in_use / 2**20), "estimated_peak_mb": round(e.host_peak / 2**20),
               "measured_peak_mb": round(peak / 2**20), "memory_ratio": round(peak / e.host_peak, 3),
               "estimated_extra_mb": round(e.host_extra / 2**20),
               "measured_extra_mb": round((peak - e.host_in_use) / 2**20)}
        self.runs.append(run)
        return run


def headless(args: argparse.Namespace, watch: Watch) -> None:
    from anitalker_core.app.cli import main

    out = Path(args.workdir) / f"out_{args.seconds:g}_{args.size}.mp4"
    extra = ["--paste-back"] if args.size else ["--crop", "full"]
    code = main(["animate", "--portrait", args.portrait, "--audio", args.audio, "--out", str(out),
                 "--variant", "hubert_audio_only", "--models", args.models, "--offline", "--steps", str(args.steps),
                 "--device", "cpu", *extra])
    if code != 0:
        raise SystemExit(f"animate failed with {code}")
    watch.done(f"headless {args.seconds:g} s, {args.size or 256} px")


def nodes(args: argparse.Namespace, watch: Watch) -> None:
    from PIL import Image

    from anitalker_core.device_policy import render_precision
    from anitalker_core.models.checkpoints import load_stage1
    from anitalker_core.pipeline import portrait_from_image
    from anitalker_core.stages import FrameRender, PasteBackImages
    from anitalker_core.stages.video import stand_in_latents

    cpu = torch.device("cpu")
    renderer = load_stage1(Path(args.models) / "stage1.ckpt", device=cpu, precision=render_precision("auto", cpu).name)
    image = torch.from_numpy(np.asarray(Image.open(args.portrait).convert("RGB")).copy()).float().div(255)
    portrait = portrait_from_image(renderer, image)
    frames = int(args.seconds * 25)
    latents = stand_in_latents(portrait, frames)
    watch.begin()  # Render Frames goes on from the warm-up: it is part of the run
    stage = FrameRender(renderer, portrait, latents)
    watch([stage.estimate()], stage.device)
    images = stage.run()
    watch.done(f"Render Frames {args.seconds:g} s")
    if args.size:
        watch.begin()
        stage = PasteBackImages(image, images, portrait.crop)
        watch([stage.estimate()], stage.device)
        stage.run()
        watch.done(f"Paste Back {args.seconds:g} s into {args.size} px")


def child(args: argparse.Namespace) -> None:
    watch = Watch()
    with torch.inference_mode():
        (headless if args.path == "headless" else nodes)(args, watch)
    print(json.dumps(watch.runs))


def main() -> None:
    from bench.bench_inputs import add_child_options, run_child

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, nargs="+", default=[2, 5])
    ap.add_argument("--size", type=int, nargs="+", default=[0, 1024],
                    help="portrait side in pixels pasted back into (0: the 256x256 crop)")
    ap.add_argument("--paths", nargs="+", choices=["headless", "nodes"], default=["headless", "nodes"])
    ap.add_argument("--steps", type=int, default=10)
    add_child_options(ap)
    args = ap.parse_args()
    if args.child:
        args.seconds, args.size = args.seconds[0], args.size[0]
        child(args)
        return
    from bench import memory
    from bench import record

    runs = []
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        models = memory.make_models(work)
        for seconds in args.seconds:
            for size in args.size:
                audio, portrait = memory.make_inputs(work, seconds, max(size, 256))
                for path in args.paths:
                    if path == "nodes" and not size and len(args.size) > 1:
                        continue  # the nodes case renders the same frames at every size: run it once, pasted back
                    for run in run_child(__spec__.name, f"{path} {seconds} s", [
                            "--path", path, "--seconds", str(seconds), "--size", str(size), "--audio", str(audio),
                            "--portrait", str(portrait), "--models", str(models), "--workdir", str(work),
                            "--steps", str(args.steps)]):
                        print(json.dumps(run), flush=True)
                        runs.append(run)
    ratios = [r["time_ratio"] for r in runs]
    memory_ratios = [r["memory_ratio"] for r in runs]
    record.save("estimate", {"steps": args.steps, "runs": runs,
                             "time_ratio_range": [min(ratios), max(ratios)],
                             "memory_ratio_range": [min(memory_ratios), max(memory_ratios)]})


if __name__ == "__main__":
    main()
