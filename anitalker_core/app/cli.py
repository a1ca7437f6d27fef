"""Headless command: ``anitalker animate --portrait P --audio A --out out.mp4`` for one clip,
``anitalker batch MANIFEST --out DIR`` for many, or the two halves of ``animate`` apart: ``anitalker motion ...
--out take.safetensors`` samples the motion and ``anitalker render --motion take.safetensors --portrait P --out
out.mp4`` renders a saved one (or ``python -m anitalker_core ...``).

A thin layer over the same pipeline the ComfyUI nodes use (``headless`` animates a clip, ``batch`` runs a
manifest); it streams rendered frames into the mp4 so a minutes-long clip never sits in memory as one tensor.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..device_policy import PRECISION_CHOICES, keep_freed_memory
from ..errors import AniTalkerError
from ..weights.files import default_models_dir
from ..options import COLUMNS, OPTION_FIELDS, ClipOptions, OptionError
from ..models.loading import LoadedModels
from .headless import animate_clip, dub_clip, render_clip, sample_clip, tqdm_progress
from .manifest import INPUT_COLUMNS
from .workers import BatchSettings

PARTS_OF = {"animate": ("input", "motion", "video"), "motion": ("input", "motion"), "render": ("input", "video"),
            "dub": ("footage", "motion", "video")}
"""The parts of the clip options (``options.PARTS``) each command takes."""
DUB_INPUTS = ("audio", "face")
"""What ``dub`` takes of the inputs: the new speech, and which face of the footage (the portrait comes from it)."""
NOT_FOR_DUB = ("paste_back", "save_motion", "yaw", "pitch", "roll", "location", "scale", "keyframes")
"""A dub always pastes into its footage, its motion belongs to that footage, and its head moves as the footage's
does (the speech's own head motion, which controls would steer, is left out)."""
ANIMATE_REQUIRED = ("portrait",)
"""--audio, or one --speaker per face: ``animate_clip`` says which is missing."""
BATCH_OPTIONS = tuple(name for name in COLUMNS if name not in INPUT_COLUMNS and name != "video")
"""The clip options ``batch`` takes as defaults for its rows (a row names its own inputs, footage and output)."""

MOTION_HELP = """Sample the motion of a portrait speaking a recording and save it (Save Motion's .safetensors format),
without rendering: sample once, then render it as often as you like (anitalker render), on other portraits too,
or edit it in between (Load Motion in ComfyUI). The options mean what they mean for animate."""
RENDER_HELP = """Render a saved motion (anitalker motion, --save-motion, or Save Motion in ComfyUI) on a portrait into
an mp4 and/or PNGs, with animate's output options (paste back, upscale, frames). --audio is optional: it becomes the
soundtrack."""

DUB_HELP = """Put new speech (--audio) on footage you have (--video): the face is found and followed through the
shot, its head keeps moving as in the footage and its mouth says the speech; the result has the footage's size and
frame rate and carries the speech. A shot shorter than the speech plays forward and backward (--extend); a longer
one ends with the speech, or goes on with its own sound (--continue-footage). Frames where the face is not found
stay as they were. With animate's output options (mp4, .mov, --frames-dir, upscale, face restore)."""

BATCH_HELP = """Animate every row of a manifest (CSV with a header row, or JSON Lines) into DIR.

  portrait,video,audio,out,seed,yaw,paste_back
  faces/anna.png,,lines/001.wav,anna_001.mp4,1,10,true
  faces/ben.jpg,,lines/002.wav,,2,,false
  ,shots/interview.mp4,lines/003.wav,interview_dub.mp4,,,

Columns: portrait and audio (paths relative to the manifest), or video instead of portrait for a row that dubs
that footage (as anitalker dub does), optional out (a file name inside DIR; default PORTRAIT_AUDIO.mp4 or
VIDEO_AUDIO.mp4) and any clip option below by its name without dashes (paste_back, calm_silence, extend, ...);
an empty cell takes the command line's value. Booleans: true/false, 1/0, yes/no. --no-color-match is the
column color_match=false. An unknown column, or two rows writing the same file, refuse the manifest before
any work. A row that fails (no face, unreadable audio, a bad value) is recorded and the rest go on.

Writes DIR/report.jsonl (one line per row: row, inputs, out, status done/failed/skipped, error, seconds).
Running the same command again skips rows whose mp4 is complete and redoes the others. Exit status: 0 when
every row is done or skipped, 1 when a row failed, 2 when the manifest or the options are wrong.
"""


def _parsed(parse):
    """An option's parser as an argparse type: its error message becomes argparse's."""
    def convert(text: str):
        try:
            return parse(text)
        except OptionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def options_of(command: str) -> tuple[str, ...]:
    """The ``ClipOptions`` fields a command takes as flags: those of its parts (``motion`` writes its motion file with
    its own ``--out``, so it takes no ``--save-motion``)."""
    names = tuple(n for n, f in OPTION_FIELDS.items() if f.metadata["part"] in PARTS_OF[command]
                  or (command == "dub" and n in DUB_INPUTS))
    if command == "animate":
        return tuple(n for n in names if OPTION_FIELDS[n].metadata["part"] != "footage")
    if command == "dub":
        return tuple(n for n in names if n not in NOT_FOR_DUB)
    # one motion file holds one face's motion: conversations are animate's alone
    return tuple(n for n in names if n not in ("save_motion", "speaker"))


def _add_clip_options(parser: argparse.ArgumentParser, names: Sequence[str],
                      required: Sequence[str] = ("portrait", "audio")) -> None:
    """The named ``ClipOptions`` fields as flags, from the fields' own metadata."""
    output = parser.add_argument_group("output", "full resolution, upscaling and image sequences; memory stays "
                                                 "that of one batch of frames however long the clip")
    for name in names:
        f = OPTION_FIELDS[name]
        meta = f.metadata
        where = output if meta["group"] == "output" else parser
        shown = f.default is not None and f.default != "" and not isinstance(f.default, bool)
        help_text = meta["help"] + (" (default: %(default)s)" if shown else "")
        if meta["many"]:  # given once per value: --speaker 1:a.wav --speaker 2:b.wav
            where.add_argument("--" + name.replace("_", "-"), dest=name, action="append", default=None,
                               metavar=meta["metavar"], type=_parsed(meta["parse"]), help=help_text)
            continue
        if meta["flag"]:  # a switch: --paste-back sets True, --no-color-match sets False
            where.add_argument(meta["flag"], dest=name, action="store_false" if f.default else "store_true",
                               help=meta["help"])
            continue
        where.add_argument("--" + name.replace("_", "-"), dest=name, default=f.default, metavar=meta["metavar"],
                           type=_parsed(meta["parse"]), choices=meta["choices"], help=help_text,
                           required=name in required)


def clip_options(given: dict) -> ClipOptions:
    """The parsed command line (``vars`` of argparse's result) as the record the core takes."""
    values = {name: value for name, value in given.items() if name in OPTION_FIELDS}
    for name, f in OPTION_FIELDS.items():
        if f.metadata["many"] and name in values:
            values[name] = tuple(values[name] or ())
    return ClipOptions(**values)


def _add_estimate_options(a: argparse.ArgumentParser) -> None:
    a.add_argument("--dry-run", action="store_true",
                   help="load the models, measure a short warm-up, print how long the run would take and how much "
                        "memory it would need, and stop without writing anything")
    a.add_argument("--no-memory-check", dest="memory_check", action="store_false",
                   help="run even when the estimate says the memory available will not suffice")


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


def build_parser(prog: str = "anitalker") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("animate", help="animate a portrait with a speech recording and write an mp4")
    _add_clip_options(a, options_of("animate"), required=ANIMATE_REQUIRED)
    _add_estimate_options(a)
    _add_run_options(a)

    m = sub.add_parser("motion", help="sample the motion for a portrait and a speech recording and save it, "
                                      "without rendering", description=MOTION_HELP)
    m.add_argument("--out", dest="save_motion", required=True, type=Path, metavar="FILE.safetensors",
                   help="the motion file to write (Save Motion's format; folders are created)")
    _add_clip_options(m, options_of("motion"))
    _add_estimate_options(m)
    _add_run_options(m)

    r = sub.add_parser("render", help="render a saved motion on a portrait into an mp4 and/or PNGs",
                       description=RENDER_HELP)
    r.add_argument("--motion", required=True, type=Path, metavar="FILE",
                   help="a motion file written by anitalker motion, --save-motion or Save Motion")
    r.add_argument("--take", type=int, default=0, metavar="N",
                   help="which take of a motion file with several to render (0 = the first, -1 = the last)")
    _add_clip_options(r, options_of("render"), required=("portrait",))
    _add_estimate_options(r)
    _add_run_options(r)

    d = sub.add_parser("dub", help="put new speech on existing footage: the face followed through the shot, its mouth "
                                   "saying the speech", description=DUB_HELP)
    _add_clip_options(d, options_of("dub"), required=("video", "audio"))
    _add_estimate_options(d)
    _add_run_options(d)

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
    _add_clip_options(b, BATCH_OPTIONS)
    _add_run_options(b)
    return parser


@dataclass(frozen=True)
class RunSettings:
    """Options of the whole run (where the weights are, where and how they run): never per clip."""

    models: Path
    allow_download: bool
    device: str
    precision: str

    @staticmethod
    def of(given: dict) -> "RunSettings":
        return RunSettings(given["models"] or default_models_dir(), not given["offline"], given["device"],
                           given["precision"])


def single(command: str, clip: ClipOptions, run: RunSettings, dry_run: bool = False, memory_check: bool = True,
           motion: Optional[Path] = None, take: int = 0) -> Optional[Path]:
    """One clip of ``animate``, ``motion`` or ``render``: load what it needs, estimate the run, do it (unless
    ``dry_run``), let the weights go."""
    models = LoadedModels(run.models, device=run.device, precision=run.precision, allow_download=run.allow_download,
                          keep=False)
    kwargs = dict(progress=tqdm_progress, estimate=True, dry_run=dry_run, memory_check=memory_check)
    if command == "motion":
        return sample_clip(models, clip, **kwargs)
    if command == "render":
        assert motion is not None
        return render_clip(models, motion, clip, take=take, **kwargs)
    if command == "dub":
        return dub_clip(models, clip, **kwargs)
    return animate_clip(models, clip, **kwargs)


def batch(manifest: Path, defaults: ClipOptions, settings: BatchSettings) -> int:
    from .batch import run_batch

    summary = run_batch(manifest, defaults, settings)
    print(summary.line(), file=sys.stderr)
    return 1 if summary.failed else 0  # not 2: the batch ran; the report says which rows failed and why


def main(argv: Optional[Sequence[str]] = None, prog: str = "anitalker") -> int:
    """The ``anitalker`` console script; the return value is the exit status (2: the user's input was wrong)."""
    given = vars(build_parser(prog).parse_args(argv))
    logging.basicConfig(level=logging.INFO if given["verbose"] else logging.WARNING, format="%(message)s")
    keep_freed_memory()
    run, clip = RunSettings.of(given), clip_options(given)
    try:
        with torch.inference_mode():
            if given["command"] == "batch":
                settings = BatchSettings(out_dir=given["out"], models_dir=run.models, device=run.device,
                                         precision=run.precision, allow_download=run.allow_download,
                                         workers=given["workers"], ray_address=given["ray"], verbose=given["verbose"])
                return batch(given["manifest"], replace(clip, out=None), settings)
            single(given["command"], clip, run, dry_run=given["dry_run"], memory_check=given["memory_check"],
                   motion=given.get("motion"), take=given.get("take", 0))
    except AniTalkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
