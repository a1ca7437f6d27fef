"""A dub measured: `anitalker dub` on a talking head panned across a 960x540, 30 fps shot, with speech of several
lengths, each run in its own process (its peak resident memory is its own).

    python -m bench.dub --seconds 4 12            # JSON in bench/results/dub-<time>.json

The shot is the shipped driving video scaled and panned over a backdrop (``tests/support/moving_face.py``), so where
its face is in every frame is known. For each run it records the wall time, the peak memory, the output's size,
rate and frame count, whether it carries the speech, and in how many frames the changed pixels are centred on the
moving face (within 20 % of its size) with nothing far from it changed. Weights are random (the fixtures' rule),
with the MFCC full-control generator and 5 sampling steps: memory and placement do not depend on either.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from bench import record
from bench.bench_inputs import speech_of_length

SHOT = dict(width=960, height=540, fps=Fraction(30), side=360)


def make_models(folder: Path) -> Path:
    from tests.support.golden import write_stage1, write_stage2

    models = folder / "models"
    models.mkdir(exist_ok=True)
    write_stage1(models / "stage1.ckpt")
    write_stage2(models / "stage2_full_control_mfcc.ckpt", "mfcc_full_control")
    return models


def placement(shot, out: Path) -> dict:
    """Where the output changed the shot: centred on the face, and nothing far from it."""
    import av

    from anitalker_core.motion.dub import footage_order
    from anitalker_core.video.footage import FootageFile

    footage = FootageFile(shot.path)
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        stream = container.streams.video[0]
        size, rate = (stream.width, stream.height), float(stream.average_rate)
        audio = bool(container.streams.audio) and bool(container.streams.audio[0].duration)
    order = footage_order(shot.frames, len(frames), "pingpong")
    y, x = np.mgrid[0:shot.height, 0:shot.width]
    centred = untouched = 0
    for frame, j in zip(frames, order):
        changed = np.abs(frame.astype(int) - footage.frames([int(j)])[0].astype(int)).max(-1) > 24  # past codec noise
        cx, cy, side = shot.face(int(j))
        ys, xs = np.nonzero(changed)
        centred += bool(len(xs)) and math.hypot(xs.mean() - cx, ys.mean() - cy) < 0.2 * side
        untouched += not changed[np.hypot(x - cx, y - cy) > 1.2 * side].any()
    return {"size": list(size), "fps": rate, "frames": len(frames), "audio": audio,
            "frames_centred_on_the_face": centred, "frames_untouched_far_from_the_face": untouched}


def run_child(shot_path: Path, audio: Path, models: Path, out: Path) -> dict:
    import resource
    import subprocess
    import sys

    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "anitalker_core", "dub", "--video", str(shot_path), "--audio",
                           str(audio), "--out", str(out), "--models", str(models), "--offline", "--variant",
                           "mfcc_full_control", "--steps", "5", "--device", "cpu"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(record.RESULTS.parents[1])})
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"anitalker dub failed:\n{proc.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(peak, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, nargs="+", default=[4.0, 12.0], help="speech lengths")
    ap.add_argument("--shot-seconds", type=float, default=2.0, help="the shot's length")
    args = ap.parse_args()
    from tests.support.moving_face import write_shot

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models = make_models(folder)
        shot = write_shot(folder / "shot.mp4", frames=round(args.shot_seconds * 30), **SHOT)
        for seconds in args.seconds:
            audio = speech_of_length(folder / f"speech_{seconds:g}.wav", seconds)
            out = folder / f"dub_{seconds:g}.mp4"
            result = {"speech_s": seconds, **run_one(shot, audio, models, out)}
            result.update(placement(shot, out))
            runs.append(result)
            print(result, flush=True)
    figures = {"shot": {"size": [SHOT["width"], SHOT["height"]], "fps": 30, "frames": shot.frames}, "runs": runs}
    if len(runs) > 1:
        figures["peak_growth"] = round(runs[-1]["peak_rss_mb"] / runs[0]["peak_rss_mb"] - 1, 4)
    print(record.save("dub", figures))


def run_one(shot, audio: Path, models: Path, out: Path) -> dict:
    """One dub in its own process (a fresh one per length: RUSAGE_CHILDREN keeps the largest child's peak, so each
    length runs from a fresh interpreter of this bench)."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", (
        "import json, sys; from pathlib import Path; from bench.dub import run_child; "
        f"print(json.dumps(run_child(Path({str(shot.path)!r}), Path({str(audio)!r}), Path({str(models)!r}), "
        f"Path({str(out)!r}))))")], capture_output=True, text=True, cwd=record.RESULTS.parents[1])
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
