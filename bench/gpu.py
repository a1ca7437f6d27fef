"""The GPU path measured in one prepared run: everything a GPU check needs, in one process.

    python -m bench.gpu                              # on a CUDA machine (sized for a few minutes on an H100)
    python -m bench.gpu --device cpu --small         # tiny sizes, to test the script itself (the suite does)

First the GPU tests (tests/test_gpu.py: parity of the CUDA path, in a child process); any failure stops the run with
their output, and on a CUDA run so does a skip. Then, with models of the real sizes and random weights (the fixtures'
rule for stage 1 and 2, a HuBERT of chinese-hubert-large's size, a GFPGAN v1.4 of the real size):

- realtime_256: seconds of speech per wall-clock second, speech file -> H.264 mp4 with the audio at 256x256, through
  the headless command's path in-process (``animate_clip``, estimate included, as ``anitalker animate`` runs it):
  HuBERT, 50 steps, the default precision;
- realtime_1080_restore: the same, pasted back into a 1920x1080 picture with the face model (``--face-restore``);
  peak_gpu_gb_1080: torch's peak allocated memory during that run (the loaded models included);
- render_fps_256: the renderer alone at the batch the pack picks, in its best precision (fp16 on CUDA), and at a
  few other batches with their peak memory;
- fp16_mean_abs_vs_fp32: the mean absolute difference (0..1) of frames rendered in fp16 and in fp32 (on a CPU bf16 is
  compared instead: the field is then null and ``low_precision_vs_fp32`` names the precision);
- the face model's speed in the pack's precision (at its batch and at 8 and 16 faces a call) and in fp32;
- each clip's seconds by stage (``stage_clock``).

Each clip runs twice with the models kept loaded, as in ComfyUI or a batch worker: the first run (``first_run``:
loading the models, cuDNN's kernel choice for each shape) and the timed one. The JSON goes to
bench/results/gpu-<time>.json; a summary against the issue's goals ends the output.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Optional, Sequence

import torch

from bench import record
from bench.gpu_figures import GB, low_precision_error, render_speed, restore_speed
from bench.gpu_tests import run_tests
from bench.stage_clock import StageClock


@dataclass(frozen=True)
class Sizes:
    """How much of everything a run measures."""

    seconds_256: float
    seconds_1080: float
    steps: int
    canvas: tuple[int, int]
    variant: str
    render_frames: int
    render_batches: tuple[int, ...]
    compare_frames: int
    restore_faces: int
    face_model: str
    restore_batches: tuple[int, ...] = ()
    runs: int = 2
    """Runs of each clip: with 2 the first pays the one-off set-up and the second is the figure."""


REAL = Sizes(seconds_256=30.0, seconds_1080=12.0, steps=50, canvas=(1920, 1080), variant="hubert_audio_only",
             render_frames=2048, render_batches=(16, 32, 64), compare_frames=64, restore_faces=32,
             face_model="GFPGANv1.4", restore_batches=(8, 16))
"""The issue's run: 750 frames at 256x256 and 300 pasted into 1920x1080, well within 8 minutes on one GPU."""
SMALL = Sizes(seconds_256=0.05, seconds_1080=0.05, steps=2, canvas=(480, 270), variant="mfcc_full_control",
              render_frames=2, render_batches=(), compare_frames=1, restore_faces=1, face_model="RestoreFormer-small",
              runs=1)
"""For testing the script on a CPU: clips of 1 frame, run once, 2 steps, MFCC features (a generator takes only
chinese-hubert-large's features, and a HuBERT of that size costs seconds to write and load), and a small RestoreFormer
in place of GFPGAN, which spandrel builds at its real size only (10 s a face on a CPU)."""

GOALS = (("realtime_256", ">=", 40.0, "x real time"), ("realtime_1080_restore", ">=", 3.0, "x real time"),
         ("peak_gpu_gb_1080", "<=", 6.0, " GB"), ("fp16_mean_abs_vs_fp32_255", "<=", 2.0, "/255"))
"""Issue #35's goals for the figures of an NVIDIA GPU."""


def write_models(folder: Path, sizes: Sizes) -> Path:
    """Random-weight models of the real sizes, in the official layouts."""
    from bench.bench_inputs import hubert_of_real_size
    from tests.support.golden import write_stage1, write_stage2

    from anitalker_core.weights.files import HUBERT_DIR, STAGE1, STAGE2
    from anitalker_core.weights.variants import get_variant

    folder.mkdir(parents=True, exist_ok=True)
    write_stage1(folder / STAGE1)
    write_stage2(folder / STAGE2[sizes.variant], sizes.variant)
    if get_variant(sizes.variant).audio == "hubert":
        hubert_of_real_size(folder / HUBERT_DIR)
    return folder


def write_face_model(folder: Path, sizes: Sizes) -> Path:
    from tests.support.image_models import write_gfpgan, write_restoreformer

    if sizes.face_model == "GFPGANv1.4":
        return write_gfpgan(folder / "GFPGANv1.4.pth")
    return write_restoreformer(folder / "RestoreFormer.pth")


def write_pictures(folder: Path, canvas: tuple[int, int]) -> tuple[Path, Path]:
    """The portrait as it ships (its crop renders at 256x256), and the same face in a picture of ``canvas``'s size
    (a head 80 % of the picture's height, centred, on a plain background), to paste back into."""
    from PIL import Image
    from tests.support.golden import MEDIA

    picture = Image.open(MEDIA / "monalisa.jpg").convert("RGB")
    width, height = canvas
    side = int(0.8 * height)
    scene = Image.new("RGB", (width, height), (40, 60, 80))
    scene.paste(picture.resize((side, side), Image.BICUBIC), ((width - side) // 2, (height - side) // 2))
    portrait, wide = folder / "portrait.png", folder / f"picture_{width}x{height}.png"
    picture.save(portrait)
    scene.save(wide)
    return portrait, wide


class Clips:
    """Clips through the headless command's path with one set of models, kept loaded between clips."""

    def __init__(self, models_dir: Path, device: str, steps: int, variant: str, work: Path) -> None:
        from anitalker_core.app.cli import RunSettings, build_parser
        from anitalker_core.models.loading import LoadedModels

        self.parser, self.work, self.device = build_parser(), work, torch.device(device)
        self.common = ["--variant", variant, "--steps", str(steps), "--models", str(models_dir), "--offline",
                       "--device", device]
        run = RunSettings.of(vars(self.parser.parse_args(["animate", "--portrait", "p", *self.common])))
        self.models = LoadedModels(run.models, device=run.device, precision=run.precision, allow_download=False,
                                   keep=True)

    def run(self, name: str, audio: Path, seconds: float, options: Sequence[str]) -> dict:
        """One clip, as ``anitalker animate --audio AUDIO OPTIONS ...`` writes it: wall seconds, seconds by stage,
        real-time factor and the estimate the path printed."""
        from anitalker_core.app.cli import clip_options
        from anitalker_core.app.headless import animate_clip

        out = self.work / f"{name}.mp4"
        given = vars(self.parser.parse_args(["animate", "--audio", str(audio), "--out", str(out), *options,
                                             *self.common]))
        notes: list[str] = []
        clock = StageClock(self.device)
        with torch.inference_mode(), clock.run():
            animate_clip(self.models, clip_options(given), progress=clock.progress, say=notes.append, estimate=True)
        if not out.is_file():
            raise SystemExit(f"{name}: no video was written")
        wall = round(clock.seconds, 3)
        return {"audio_s": seconds, "wall_s": wall, "realtime": round(seconds / wall, 3),
                "stages_s": clock.figures(), "mp4_bytes": out.stat().st_size,
                "estimate": next((n for n in notes if n.startswith("estimate:")), None)}


def clip_case(clips: Clips, name: str, audio: Path, seconds: float, options: Sequence[str], runs: int = 2) -> dict:
    """A clip run ``runs`` times: the last is the figure (with its peak GPU memory); the first of two pays the
    one-off set-up (loading, kernel choice)."""
    device = clips.device
    first = clips.run(f"{name}_first", audio, seconds, options) if runs > 1 else None
    if first is not None:
        print(f"{name}: first run {first['wall_s']:.2f} s", file=sys.stderr)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        resident = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    timed = clips.run(name, audio, seconds, options)
    if device.type == "cuda":
        timed["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated(device) / GB, 3)
        timed["gpu_gb_before"] = round(resident / GB, 3)
    timed["first_run"] = {k: first[k] for k in ("wall_s", "realtime", "stages_s")} if first is not None else None
    print(f"{name}: {timed['wall_s']:.2f} s for {seconds:g} s of speech ({timed['realtime']:.2f}x real time)",
          file=sys.stderr)
    return timed


def nvenc() -> dict:
    """Whether FFmpeg's NVENC H.264 encoder opens on this machine (data-centre GPUs such as the H100 have none)."""
    import av

    try:
        codec = av.CodecContext.create("h264_nvenc", "w")
        codec.width, codec.height, codec.pix_fmt = 256, 256, "yuv420p"
        codec.time_base = Fraction(1, 25)
        codec.open()
    except (av.FFmpegError, ValueError) as exc:  # no such encoder, or no NVENC device or driver
        return {"available": False, "reason": str(exc)[:200]}
    return {"available": True}


def goals(figures: dict) -> dict:
    """Each goal with its figure and whether it is met (None: not measured on this run)."""
    out = {}
    for name, op, bound, unit in GOALS:
        value = figures.get(name)
        met = None if value is None else (value >= bound if op == ">=" else value <= bound)
        out[name] = {"goal": f"{op} {bound:g}{unit}", "value": value, "met": met}
    return out


def summary(figures: dict) -> str:
    lines = [f"{'small run (tests the script; its figures say nothing about speed)' if figures['small'] else 'run'}"
             f" on {figures['device']}:"]
    for name, goal in figures["goals"].items():
        state = "not measured here" if goal["met"] is None else "met" if goal["met"] else "SHORT"
        lines.append(f"  {name:28} {str(goal['value']):>10}   goal {goal['goal']:18} {state}")
    low = figures["low_precision_vs_fp32"]
    lines.append(f"  render_fps_256               {figures['render_fps_256']:>10}   ({figures['render']['precision']}, "
                 f"batch {figures['render']['batch']}); {low['precision']} vs fp32: {low['mean_abs_255']}/255 mean")
    for case in ("case_256", "case_1080_restore"):
        stages = ", ".join(f"{k} {v:g}" for k, v in figures[case]["stages_s"].items() if v)
        lines.append(f"  {case} seconds: {stages}")
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu"))
    ap.add_argument("--small", action="store_true", help="tiny sizes, to test this script (the JSON says small)")
    ap.add_argument("--seconds", type=float, default=None, help="speech of the 256x256 clip (default 30)")
    ap.add_argument("--seconds-1080", type=float, default=None, help="speech of the 1080p clip (default 12)")
    ap.add_argument("--models", type=Path, default=None,
                    help="a models folder holding the run's weights (default: random weights written for the run)")
    ap.add_argument("--results", type=Path, default=record.RESULTS, help="where the JSON goes (default: bench/results)")
    return ap.parse_args(argv)


def measure(sizes: Sizes, device: torch.device, models: Optional[Path]) -> dict:
    """Both clips, the renderer alone, low precision against fp32 and the face model, with inputs written into a
    temporary folder (and random-weight models unless ``models`` holds the run's)."""
    from bench.bench_inputs import speech_of_length
    from anitalker_core.image.picture import load_picture
    from anitalker_core.pipeline import portrait_from_image

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models_dir = models or write_models(work / "models", sizes)
        face_file = write_face_model(work, sizes)
        portrait, picture = write_pictures(work, sizes.canvas)
        speech_256 = speech_of_length(work / "speech_256.wav", sizes.seconds_256)
        speech_1080 = speech_of_length(work / "speech_1080.wav", sizes.seconds_1080)
        clips = Clips(models_dir, str(device), sizes.steps, sizes.variant, work)
        case_256 = clip_case(clips, "case_256", speech_256, sizes.seconds_256, ["--portrait", str(portrait)],
                             sizes.runs)
        case_1080 = clip_case(clips, "case_1080_restore", speech_1080, sizes.seconds_1080,
                              ["--portrait", str(picture), "--paste-back", "--face-restore", str(face_file)],
                              sizes.runs)
        renderer = clips.models.renderer(sizes.variant)
        with torch.inference_mode():
            code = portrait_from_image(renderer, load_picture(portrait))
            render = render_speed(renderer, code, sizes.render_frames, sizes.render_batches)
            low = low_precision_error(renderer, code, sizes.compare_frames)
        restore = restore_speed(face_file, device, sizes.restore_faces, sizes.restore_batches)
    return {"case_256": case_256, "case_1080": case_1080, "render": render, "low": low, "restore": restore}


def main(argv: Optional[Sequence[str]] = None) -> Path:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU is available here (use --device cpu --small to test the script)")
    sizes = SMALL if args.small else REAL
    sizes = replace(sizes, seconds_256=args.seconds or sizes.seconds_256,
                    seconds_1080=args.seconds_1080 or sizes.seconds_1080)
    print("running the GPU tests first ...", file=sys.stderr)
    gpu_tests = run_tests(require_run=device.type == "cuda")
    print(f"GPU tests: {gpu_tests['passed']} passed, {gpu_tests['skipped']} skipped", file=sys.stderr)

    from anitalker_core.device_policy import keep_freed_memory

    keep_freed_memory()  # the command's allocator policy
    measured = measure(sizes, device, args.models)
    case_256, case_1080, render, low = (measured[k] for k in ("case_256", "case_1080", "render", "low"))
    fp16 = low["precision"] == "fp16"
    figures = {
        "small": bool(args.small), "device": record.device_description(args.device), "torch": torch.__version__,
        "gpu_tests": gpu_tests,
        "realtime_256": case_256["realtime"], "realtime_1080_restore": case_1080["realtime"],
        "peak_gpu_gb_1080": case_1080.get("peak_gpu_gb"), "render_fps_256": render["fps"],
        "fp16_mean_abs_vs_fp32": low["mean_abs"] if fp16 else None,
        "fp16_mean_abs_vs_fp32_255": low["mean_abs_255"] if fp16 else None,
        "low_precision_vs_fp32": low,
        "stages_256_s": case_256["stages_s"], "stages_1080_restore_s": case_1080["stages_s"],
        "case_256": case_256, "case_1080_restore": {**case_1080, "canvas": "x".join(map(str, sizes.canvas))},
        "render": render, "face_model": {"file": sizes.face_model, **measured["restore"]},
        "sizes": {**sizes.__dict__, "canvas": "x".join(map(str, sizes.canvas))},
        "nvenc": nvenc(), "cudnn_tf32": torch.backends.cudnn.allow_tf32, "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    figures["goals"] = goals(figures)
    path = record.save("gpu", figures, device=args.device, module="bench.gpu",
                       argv=sys.argv[1:] if argv is None else argv, folder=args.results)
    print(summary(figures))
    return path


if __name__ == "__main__":
    main()
