"""Headless command: ``python -m anitalker_core animate --portrait P --audio A --out out.mp4``.

A thin layer over the same pipeline the ComfyUI nodes use; it streams rendered frames into the mp4 so a
minutes-long clip never sits in memory as one tensor.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .device_policy import PRECISION_CHOICES, describe, render_precision, resolve_device
from .errors import AniTalkerError
from .start_noise import SEED_MODES
from .variants import STAGE2_VARIANTS, get_variant

AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)


def _parse_box(text: Optional[str]) -> Optional[tuple[int, int, int]]:
    if not text:
        return None
    try:
        x, y, size = (int(v) for v in text.split(","))
    except ValueError:
        raise AniTalkerError(f"--box must be 'x,y,size' in portrait pixels, e.g. 120,80,400; got {text!r}") from None
    return x, y, size


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m anitalker_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("animate", help="animate a portrait with a speech recording and write an mp4")
    a.add_argument("--portrait", required=True, type=Path, help="portrait image (any size; PNG/JPEG/WebP, alpha ok)")
    a.add_argument("--audio", required=True, type=Path, help="speech recording (wav, mp3, flac, m4a, ...)")
    a.add_argument("--out", required=True, type=Path, help="output .mp4 (H.264 + AAC)")
    a.add_argument("--variant", default="hubert_audio_only", choices=STAGE2_VARIANTS,
                   help="stage-2 motion generator; mfcc_* need no HuBERT model (default: %(default)s)")
    a.add_argument("--models", type=Path, default=None,
                   help="folder with stage1.ckpt, stage2_*.ckpt and chinese-hubert-large/ "
                        "(default: ComfyUI/models/anitalker inside ComfyUI, else ./models/anitalker)")
    a.add_argument("--offline", action="store_true", help="never download missing weights")
    a.add_argument("--steps", type=int, default=50, help="diffusion steps: 50 is the official setting; any of 2-36, 38, 40, 42, 44, 46, 48, 50, 53, 56, "
                        "59, 63, 67, 72, 77, 84, 91, 100, ... (counts an even stride over 1000 training steps gives)")
    a.add_argument("--seed", type=int, default=0)
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
    a.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    a.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                   help="render precision. auto: fp16 on GPUs, bf16 on CPUs with bf16 instructions (about 1.7x "
                        "faster, mean error about 1/255), else fp32; the sampler always runs in fp32")
    a.add_argument("--batch-size", type=int, default=0, help="frames rendered per batch (0 = auto)")
    a.add_argument("-v", "--verbose", action="store_true")
    return parser


def _progress(desc: str):
    from tqdm.auto import tqdm

    bar = tqdm(desc=desc, unit="it", leave=True)

    def callback(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return callback


def _load_image(path: Path) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise AniTalkerError(f"portrait {path} does not exist")
    try:
        with Image.open(path) as im:
            im.load()
            has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
            mode = "RGBA" if has_alpha else "RGB"
            arr = np.asarray(im.convert(mode))
    except (UnidentifiedImageError, OSError) as exc:
        raise AniTalkerError(f"could not read portrait {path}: {exc}; give a PNG, JPEG or WebP image") from exc
    return torch.from_numpy(arr.copy()).float().div_(255)


def _audio_for_mux(waveform: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, int]:
    import torchaudio.functional as AF

    if waveform.ndim == 3:
        waveform = waveform[0]
    if sample_rate not in AAC_RATES:
        waveform = AF.resample(waveform, sample_rate, 48000)
        sample_rate = 48000
    return waveform, sample_rate


def animate(args: argparse.Namespace) -> Path:
    from . import control as control_mod
    from .audio_features import HubertFeatures, MfccFeatures
    from .audio_io import load_audio_file
    from .checkpoints import load_stage1, load_stage2
    from .model_files import HUBERT_DIR, STAGE1, STAGE2, default_models_dir, ensure_files
    from .pipeline import features_from_audio, generate_motion, portrait_from_image
    from .renderer import render_frames
    from .video_io import Mp4Writer

    device = resolve_device(args.device)
    precision = render_precision(args.precision, device)
    print(describe(device, precision), file=sys.stderr)
    models_dir = args.models or default_models_dir()
    hubert = get_variant(args.variant).audio == "hubert"
    names = [STAGE1, STAGE2[args.variant]] + ([HUBERT_DIR] if hubert else [])
    files = ensure_files(names, models_dir, allow_download=not args.offline, log=lambda m: print(m, file=sys.stderr))

    # Read the inputs first: a bad portrait or audio fails in a second, not after loading 1 GB of weights.
    image = _load_image(args.portrait)
    waveform, sample_rate = load_audio_file(args.audio)

    renderer = load_stage1(files[STAGE1], device=device, precision=precision.name)
    portrait = portrait_from_image(renderer, image, crop_mode=args.crop, box=_parse_box(args.box))
    if portrait.note:
        print(portrait.note, file=sys.stderr)

    encoder = HubertFeatures(files[HUBERT_DIR], device=device) if hubert else MfccFeatures()
    audio = features_from_audio(encoder, waveform, sample_rate)
    del encoder

    control = None
    wants_control = any(v is not None for v in (args.yaw, args.pitch, args.roll, args.location, args.scale))
    if wants_control or args.keyframes:
        control = control_mod.make_control(
            yaw=args.yaw or 0.0, pitch=args.pitch or 0.0, roll=args.roll or 0.0,
            location=0.5 if args.location is None else args.location,
            scale=0.5 if args.scale is None else args.scale,
            keyframes=args.keyframes,
        )
    generator = load_stage2(files[STAGE2[args.variant]], device=device)
    motion = generate_motion(generator, portrait, audio, control=control, seed=args.seed, steps=args.steps,
                             seed_mode=args.seed_mode, callback=_progress("sampling motion"))
    del generator
    if motion.note:
        print(motion.note, file=sys.stderr)

    latents = motion.latents[0]
    total = latents.shape[0]
    chunk = 250  # frames per rendered chunk: bounds memory for minutes-long clips
    progress = _progress("rendering frames")
    with Mp4Writer(args.out, fps=int(motion.fps)) as writer:
        mux_wave, mux_rate = _audio_for_mux(waveform, sample_rate)
        writer.add_audio_stream(mux_rate, int(mux_wave.shape[0]))
        for start in range(0, total, chunk):
            frames = render_frames(renderer, portrait, latents[start:start + chunk],
                                   batch_size=args.batch_size or None,
                                   callback=lambda d, t, s=start: progress(s + d, total))
            writer.write(frames)
        writer.write_audio(mux_wave, mux_rate)
    print(f"wrote {args.out} ({total} frames at {motion.fps:g} fps)", file=sys.stderr)
    return args.out


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        with torch.inference_mode():
            if args.command == "animate":
                animate(args)
    except AniTalkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
