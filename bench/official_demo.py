"""The official demo and `anitalker animate`, back to back on the same clip, each in a process of its own.

    python -m bench.official_demo --official ~/src/AniTalker --official-python ~/venvs/anitalker-official/bin/python
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 python -m bench.official_demo ...
    python -m bench.official_demo ... --pack-revision b810673       # the pack as it was at that revision

The second line runs both on the AVX2 kernels of PyTorch, oneDNN and MKL, as on a CPU without AVX-512.

The official demo is ``code/demo.py`` of a checkout of https://github.com/X-LANCE/AniTalker, run as it is from that
checkout by a Python environment that has its requirements (pytorch-lightning, espnet, moviepy 1.x, librosa,
python_speech_features; espnet with --no-deps is enough, the demo takes only its conformer encoder). The
one thing added is ``torch.qr``, which PyTorch 2 removed, as ``torch.linalg.qr`` with
the same reduced mode. Both sides get the same inputs: the parity fixtures' random-weight checkpoints written in
the official layouts, statue.jpg (resized whole, as the demo does: ``--crop full`` here), statue.wav repeated to
``--seconds``, the MFCC full-control generator with the demo's default controls (yaw 0.25 = 22.5 degrees,
location and scale 0.5), seed 0 with the demo's start noise, 50 steps, on the CPU, an mp4 with the audio at the
end. Each side is timed from process start to exit (imports, loading and video encoding included), with its
peak resident memory; the demo's own phase times are kept too. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench import record
from bench.bench_inputs import checkout, speech_of_length
from tests.support import golden
from tests.support.golden import MEDIA, REPO

VARIANT = "mfcc_full_control"
STAGE2_FILE = "stage2_full_control_mfcc.ckpt"  # the released name the pack looks for

# PyTorch 2 removed torch.qr; the demo calls it with its default (reduced) mode.
SHIM = ("import runpy, sys, torch\n"
        "torch.qr = lambda a, some=True: torch.linalg.qr(a, mode='reduced' if some else 'complete')\n"
        "sys.path.insert(0, '.')\n"
        "sys.argv = ['demo.py'] + sys.argv[1:]\n"
        "runpy.run_path('demo.py', run_name='__main__')\n")

KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "OMP_NUM_THREADS")


def run_timed(cmd: list[str], cwd: Path, log: Path) -> dict:
    """Wall-clock seconds and peak resident memory of one process (its own, through wait4)."""
    with log.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024}


def frame_count(video: Path) -> int:
    import av

    with av.open(str(video)) as f:
        return sum(1 for _ in f.decode(video=0))


def official_phases(log: str) -> dict:
    """The phase times the demo prints ("Motion Diffusion Model: 4.56 Seconds", "Renderer Model: ...")."""
    return {m.group(1).strip().lower().replace(" ", "_") + "_s": float(m.group(2))
            for m in re.finditer(r"^([A-Za-z ]+): ([0-9.]+) Seconds", log, re.MULTILINE)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", type=Path, required=True, help="a checkout of X-LANCE/AniTalker")
    ap.add_argument("--official-python", default=sys.executable, help="a Python that has the demo's requirements")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--pack-revision", metavar="REVISION",
                    help="run the pack of this revision (e.g. b810673, the code before a change) instead of this checkout's")
    ap.add_argument("--repeats", type=int, default=1, help="pairs run, official first in each; medians are compared")
    args = ap.parse_args()
    demo = args.official / "code" / "demo.py"
    if not demo.is_file():
        raise SystemExit(f"{demo} not found: --official must be a checkout of https://github.com/X-LANCE/AniTalker")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = tmp / "models"
        models.mkdir()
        golden.write_stage1(models / "stage1.ckpt")
        golden.write_stage2(models / STAGE2_FILE, VARIANT)
        audio = speech_of_length(tmp / "speech.wav", args.seconds)
        portrait = MEDIA / "statue.jpg"
        pack = checkout(args.pack_revision, tmp / "pack") if args.pack_revision else REPO

        official_cmd = [args.official_python, "-c", SHIM, "--infer_type", VARIANT, "--test_image_path", str(portrait),
                        "--test_audio_path", str(audio), "--result_path", str(tmp / "official"),
                        "--stage1_checkpoint_path", str(models / "stage1.ckpt"),
                        "--stage2_checkpoint_path", str(models / STAGE2_FILE), "--control_flag",
                        "--step_T", str(args.steps), "--seed", "0", "--device", "cpu"]
        ours_cmd = [sys.executable, "-m", "anitalker_core", "animate", "--portrait", str(portrait), "--audio",
                    str(audio), "--out", str(tmp / "ours.mp4"), "--variant", VARIANT, "--models", str(models),
                    "--offline", "--crop", "full", "--yaw", "22.5", "--location", "0.5", "--scale", "0.5",
                    "--steps", str(args.steps), "--seed", "0", "--seed-mode", "official", "--device", "cpu"]

        runs = []
        for _ in range(args.repeats):
            official = run_timed(official_cmd, args.official / "code", tmp / "official.log")
            official.update(official_phases((tmp / "official.log").read_text()))
            official["frames"] = frame_count(next((tmp / "official").glob("*.mp4")))
            ours = run_timed(ours_cmd, pack, tmp / "ours.log")
            ours["frames"] = frame_count(tmp / "ours.mp4")
            ours["says"] = [line for line in (tmp / "ours.log").read_text().splitlines()
                            if line.startswith(("device:", "estimate:"))]
            runs.append({"official": official, "ours": ours})
            print(f"official {official['seconds']:.1f} s ({official['frames']} frames, peak "
                  f"{official['peak_rss_mb']:.0f} MB), ours {ours['seconds']:.1f} s ({ours['frames']} frames, peak "
                  f"{ours['peak_rss_mb']:.0f} MB)")

    figures = {"pack_revision": args.pack_revision or record.commit(), "seconds_of_audio": args.seconds, "steps": args.steps, "variant": VARIANT,
               "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "kernel_env": {k: os.environ[k] for k in KERNEL_ENV if k in os.environ},
               "runs": runs}
    for name in ("official", "ours"):
        figures[f"{name}_median_s"] = statistics.median(run[name]["seconds"] for run in runs)
    figures["speedup"] = figures["official_median_s"] / figures["ours_median_s"]
    print(f"speed-up: {figures['speedup']:.2f}x (medians of {len(runs)} pair(s))")
    record.save("official_demo", figures)


if __name__ == "__main__":
    main()
