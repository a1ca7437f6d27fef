"""Headless command: ``anitalker animate --portrait P --audio A --out out.mp4`` for one clip,
``anitalker batch MANIFEST --out DIR`` for many (or ``python -m anitalker_core ...``).

A thin layer over the same pipeline the ComfyUI nodes use (``headless`` animates a clip, ``batch`` runs a
manifest); it streams rendered frames into the mp4 so a minutes-long clip never sits in memory as one tensor.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..audio.voice_activity import MIN_PAUSE_S
from ..device_policy import PRECISION_CHOICES, keep_freed_memory
from ..diffusion.start_noise import SEED_MODES
from ..errors import AniTalkerError
from ..image.paste_back import MASKS
from ..models.variants import STAGE2_VARIANTS
from ..models.weight_files import default_models_dir
from .headless import LoadedModels, animate_clip, tqdm_progress

BATCH_HELP = """Animate every row of a manifest (CSV with a header row, or JSON Lines) into DIR.

  portrait,audio,out,seed,yaw,paste_back
  faces/anna.png,lines/001.wav,anna_001.mp4,1,10,true
  faces/ben.jpg,lines/002.wav,,2,,false

Columns: portrait and audio (paths relative to the manifest), optional out (a file name inside DIR; default
PORTRAIT_AUDIO.mp4) and any clip option below by its name without dashes (paste_back, calm_silence, ...);
an empty cell takes the command line's value. Booleans: true/false, 1/0, yes/no. --no-color-match is the
column color_match=false. An unknown column, or two rows writing the same file, refuse the manifest before
any work. A row that fails (no face, unreadable audio, a bad value) is recorded and the rest go on.

Writes DIR/report.jsonl (one line per row: row, inputs, out, status done/failed/skipped, error, seconds).
Running the same command again skips rows whose mp4 is complete and redoes the others. Exit status: 0 when
every row is done or skipped, 1 when a row failed, 2 when the manifest or the options are wrong.
"""


def _number_in(low: float, high: float):
    """An argparse type: a number from ``low`` to ``high`` (checked before any weights are loaded)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a number from {low:g} to {high:g}, got {text!r}")
        return value

    return parse


def _add_clip_options(a: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Options of one clip: on ``animate``'s command line, as ``batch`` defaults and as manifest columns.
    Returns the output group, so ``animate`` can add its own outputs to it."""
    a.add_argument("--variant", default="hubert_audio_only", choices=STAGE2_VARIANTS,
                   help="stage-2 motion generator; mfcc_* need no HuBERT model (default: %(default)s)")
    a.add_argument("--steps", type=int, default=50, help="diffusion steps: 50 is the official setting; any of 2-36, 38, 40, 42, 44, 46, 48, 50, 53, 56, "
                        "59, 63, 67, 72, 77, 84, 91, 100, ... (counts an even stride over 1000 training steps gives)")
    a.add_argument("--seed", type=int, default=0,
                   help="start noise of the motion sampler: the same seed, inputs and options give the same motion; "
                        "another seed gives another take of head motion and expression (default: %(default)s)")
    a.add_argument("--seed-mode", choices=SEED_MODES, default="torch",
                   help="'official' reproduces the official demo's start noise for the same seed")
    a.add_argument("--yaw", type=float, default=None, help="head yaw in degrees (turns on pose control)")
    a.add_argument("--pitch", type=float, default=None, help="head pitch in degrees (turns on pose control)")
    a.add_argument("--roll", type=float, default=None, help="head roll in degrees (turns on pose control)")
    a.add_argument("--location", type=float, default=None, help="face location 0 (left) .. 1 (right)")
    a.add_argument("--scale", type=float, default=None, help="face scale 0 (small) .. 1 (large)")
    a.add_argument("--keyframes", default="", help="control keyframes, e.g. '0: yaw=0; 2s: yaw=20 pitch=5; 100: yaw=-10 scale=0.6'")
    a.add_argument("--crop", choices=("auto", "full", "manual"), default="auto",
                   help="auto: find the face; full: use the whole image (already-cropped portraits); manual: --box")
    a.add_argument("--box", default=None, help="manual crop 'x,y,size' in portrait pixels")
    a.add_argument("--batch-size", type=int, default=0, help="frames rendered per batch (0 = auto)")
    a.add_argument("--calm-silence", type=_number_in(0, 1), default=0.0, metavar="STRENGTH",
                   help="in the speaker's pauses let the mouth settle and the head hold still: 0 off (default) "
                        "to 1 fully calm")
    a.add_argument("--calm-min-pause", type=_number_in(0, 60), default=MIN_PAUSE_S, metavar="SECONDS",
                   help="shortest silence that --calm-silence treats as a pause (default: %(default)s)")
    v = a.add_argument_group("output", "full resolution, upscaling and image sequences; memory stays that of one "
                                       "batch of frames however long the clip")
    v.add_argument("--paste-back", action="store_true",
                   help="paste the animated head back into the portrait at its original size")
    v.add_argument("--upscale-model", type=Path, default=None,
                   help="upscale model file (e.g. RealESRGAN_x2.pth) applied to the 256x256 frames before paste back "
                        "(needs the spandrel package)")
    v.add_argument("--feather", type=float, default=0.1, help="paste-back soft edge, fraction of the crop side")
    v.add_argument("--mask", choices=MASKS, default="head",
                   help="paste-back mask: head (soft ellipse around the head) or box (the whole square crop)")
    v.add_argument("--no-color-match", dest="color_match", action="store_false",
                   help="paste back without matching the rendered colours to the picture")
    return v


def _add_run_options(a: argparse.ArgumentParser) -> None:
    """Options of the whole run (where the weights are, where and how they run): never per clip."""
    a.add_argument("--models", type=Path, default=None,
                   help="folder with stage1.ckpt, stage2_*.ckpt and chinese-hubert-large/ "
                        "(default: ComfyUI/models/anitalker inside ComfyUI, else ./models/anitalker)")
    a.add_argument("--offline", action="store_true", help="never download missing weights")
    a.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    a.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                   help="render precision. auto: fp16 on GPUs, bf16 on CPUs with bf16 instructions (about 1.7x "
                        "faster, mean error about 1/255), else fp32; the sampler always runs in fp32")
    a.add_argument("-v", "--verbose", action="store_true")


def clip_options_parser() -> argparse.ArgumentParser:
    """The per-clip options alone: the one definition a manifest row's columns are parsed with."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    _add_clip_options(parser)
    return parser


def build_parser(prog: str = "anitalker") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("animate", help="animate a portrait with a speech recording and write an mp4")
    a.add_argument("--portrait", required=True, type=Path, help="portrait image (any size; PNG/JPEG/WebP, alpha ok)")
    a.add_argument("--audio", required=True, type=Path, help="speech recording (wav, mp3, flac, m4a, ...)")
    a.add_argument("--out", type=Path, default=None,
                   help="output .mp4 (H.264 + AAC); optional when --frames-dir is given")
    output = _add_clip_options(a)
    output.add_argument("--frames-dir", type=Path, default=None,
                        help="also (or, without --out, only) write numbered PNGs and audio.wav into this folder")
    a.add_argument("--save-motion", type=Path, default=None, metavar="FILE",
                   help="also save the motion that is rendered as a .safetensors motion file (Save Motion's format)")
    a.add_argument("--dry-run", action="store_true",
                   help="load the models, measure a short warm-up, print how long the run would take and how much "
                        "memory it would need, and stop without writing anything")
    a.add_argument("--no-memory-check", dest="memory_check", action="store_false",
                   help="run even when the estimate says the memory available will not suffice")
    _add_run_options(a)

    b = sub.add_parser("batch", help="animate every row of a CSV or JSONL manifest into a folder; resumable",
                       description=BATCH_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("manifest", type=Path, metavar="MANIFEST",
                   help="CSV or JSONL, one clip per row: portrait, audio, optional out (file name) and any of the "
                        "clip options below by name (steps, seed, yaw, paste_back, ...)")
    b.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="folder for the mp4s and report.jsonl (with --ray: a path every node sees)")
    b.add_argument("--workers", type=int, default=None, metavar="N",
                   help="clips animated at once: local processes, one GPU each on a multi-GPU machine (default 1); "
                        "with --ray, Ray actors (default: one per GPU of the cluster)")
    b.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run the rows on a Ray cluster (pip install 'anitalker-comfy[ray]'); without ADDRESS the "
                        "cluster Ray finds (RAY_ADDRESS, or one started on this machine), else a local one")
    _add_clip_options(b)
    _add_run_options(b)
    return parser


def animate(args: argparse.Namespace) -> Optional[Path]:
    """Load what the clip needs, estimate the run, animate it (unless --dry-run), let the weights go."""
    models = LoadedModels(args.models or default_models_dir(), device=args.device, precision=args.precision,
                          allow_download=not args.offline, keep=False)
    return animate_clip(models, args, progress=tqdm_progress, estimate=True)


def batch(args: argparse.Namespace) -> int:
    from .batch import BatchSettings, run_batch

    settings = BatchSettings(
        out_dir=args.out, models_dir=args.models or default_models_dir(), device=args.device,
        precision=args.precision, allow_download=not args.offline, workers=args.workers, ray_address=args.ray,
        verbose=args.verbose,
    )
    summary = run_batch(args.manifest, clip_options_parser(), args, settings)
    print(summary.line(), file=sys.stderr)
    return 1 if summary.failed else 0  # not 2: the batch ran; the report says which rows failed and why


def main(argv: Optional[Sequence[str]] = None, prog: str = "anitalker") -> int:
    """The ``anitalker`` console script; the return value is the exit status (2: the user's input was wrong)."""
    args = build_parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    keep_freed_memory()
    try:
        with torch.inference_mode():
            if args.command == "batch":
                return batch(args)
            animate(args)
    except AniTalkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
