"""Headless command: ``anitalker animate --portrait P --audio A --out out.mp4`` (or ``python -m anitalker_core``).

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
from .paste_back import MASKS
from .start_noise import SEED_MODES
from .types import Motion
from .variants import STAGE2_VARIANTS, get_variant
from .voice_activity import MIN_PAUSE_S


def _parse_box(text: Optional[str]) -> Optional[tuple[int, int, int]]:
    if not text:
        return None
    try:
        x, y, size = (int(v) for v in text.split(","))
    except ValueError:
        raise AniTalkerError(f"--box must be 'x,y,size' in portrait pixels, e.g. 120,80,400; got {text!r}") from None
    return x, y, size


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


def build_parser(prog: str = "anitalker") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("animate", help="animate a portrait with a speech recording and write an mp4")
    a.add_argument("--portrait", required=True, type=Path, help="portrait image (any size; PNG/JPEG/WebP, alpha ok)")
    a.add_argument("--audio", required=True, type=Path, help="speech recording (wav, mp3, flac, m4a, ...)")
    a.add_argument("--out", type=Path, default=None,
                   help="output .mp4 (H.264 + AAC); optional when --frames-dir is given")
    a.add_argument("--variant", default="hubert_audio_only", choices=STAGE2_VARIANTS,
                   help="stage-2 motion generator; mfcc_* need no HuBERT model (default: %(default)s)")
    a.add_argument("--models", type=Path, default=None,
                   help="folder with stage1.ckpt, stage2_*.ckpt and chinese-hubert-large/ "
                        "(default: ComfyUI/models/anitalker inside ComfyUI, else ./models/anitalker)")
    a.add_argument("--offline", action="store_true", help="never download missing weights")
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
    a.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    a.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                   help="render precision. auto: fp16 on GPUs, bf16 on CPUs with bf16 instructions (about 1.7x "
                        "faster, mean error about 1/255), else fp32; the sampler always runs in fp32")
    a.add_argument("--batch-size", type=int, default=0, help="frames rendered per batch (0 = auto)")
    a.add_argument("--calm-silence", type=_number_in(0, 1), default=0.0, metavar="STRENGTH",
                   help="in the speaker's pauses let the mouth settle and the head hold still: 0 off (default) "
                        "to 1 fully calm")
    a.add_argument("--calm-min-pause", type=_number_in(0, 60), default=MIN_PAUSE_S, metavar="SECONDS",
                   help="shortest silence that --calm-silence treats as a pause (default: %(default)s)")
    a.add_argument("--save-motion", type=Path, default=None, metavar="FILE",
                   help="also save the motion that is rendered as a .safetensors motion file (Save Motion's format)")
    v = a.add_argument_group("output", "full resolution, upscaling and image sequences; memory stays that of one "
                                       "batch of frames however long the clip")
    v.add_argument("--paste-back", action="store_true",
                   help="paste the animated head back into the portrait at its original size")
    v.add_argument("--upscale-model", type=Path, default=None,
                   help="upscale model file (e.g. RealESRGAN_x2.pth) applied to the 256x256 frames before paste back "
                        "(needs the spandrel package)")
    v.add_argument("--frames-dir", type=Path, default=None,
                   help="also (or, without --out, only) write numbered PNGs and audio.wav into this folder")
    v.add_argument("--feather", type=float, default=0.1, help="paste-back soft edge, fraction of the crop side")
    v.add_argument("--mask", choices=MASKS, default="head",
                   help="paste-back mask: head (soft ellipse around the head) or box (the whole square crop)")
    v.add_argument("--no-color-match", dest="color_match", action="store_false",
                   help="paste back without matching the rendered colours to the picture")
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


def _calm_and_keep(args: argparse.Namespace, motion: Motion, waveform: torch.Tensor, sample_rate: int) -> Motion:
    """--calm-silence, then --save-motion: the file holds exactly the motion that is rendered."""
    if args.calm_silence:
        from .calm_silence import calm_silence
        from .voice_activity import detect_voice_activity

        activity = detect_voice_activity(waveform, sample_rate, motion.num_frames, motion.fps,
                                         min_pause_s=args.calm_min_pause)
        motion = calm_silence(motion, activity, strength=args.calm_silence)
        print(motion.note, file=sys.stderr)
    if args.save_motion:
        from .motion_io import save_motion

        print(f"saved the motion to {save_motion(motion, args.save_motion)}", file=sys.stderr)
    return motion


def animate(args: argparse.Namespace) -> Path:
    from . import control as control_mod
    from .audio_features import HubertFeatures, MfccFeatures, check_hubert_config
    from .audio_io import load_audio_file
    from .checkpoints import load_stage1, load_stage2
    from .model_files import HUBERT_DIR, STAGE1, STAGE2, default_models_dir, ensure_files
    from .pipeline import features_from_audio, generate_motion, motion_take, portrait_from_image
    from .video_io import FrameSequenceWriter, Mp4Writer
    from .video_render import VideoRender

    if args.out is None and args.frames_dir is None:
        raise AniTalkerError("nothing to write: give --out FILE.mp4, --frames-dir DIR, or both")
    device = resolve_device(args.device)
    precision = render_precision(args.precision, device)
    models_dir = args.models or default_models_dir()
    hubert = get_variant(args.variant).audio == "hubert"
    names = [STAGE1, STAGE2[args.variant]] + ([HUBERT_DIR] if hubert else [])
    files = ensure_files(names, models_dir, allow_download=not args.offline, log=lambda m: print(m, file=sys.stderr))
    if hubert:
        check_hubert_config(files[HUBERT_DIR])  # a wrong speech model fails now, not after loading the rest

    # Read the inputs first: a bad portrait or audio fails in a second, not after loading 1 GB of weights.
    image = _load_image(args.portrait)
    waveform, sample_rate = load_audio_file(args.audio)
    if not 0 <= args.feather <= 0.5:
        raise AniTalkerError(f"--feather {args.feather} must be between 0 and 0.5 (a fraction of the crop side)")
    upscaler = None
    if args.upscale_model is not None:
        from .upscale import load_upscale_model

        upscaler = load_upscale_model(args.upscale_model, device=device)
        print(f"upscale model: {upscaler.name}", file=sys.stderr)

    print(describe(device, precision), file=sys.stderr)  # once the inputs are known to be usable
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
    motion = _calm_and_keep(args, motion, waveform, sample_rate)

    video = VideoRender(renderer, portrait, motion_take(motion, 0), fps=motion.fps,
                        original=image if args.paste_back else None, feather=args.feather, mask=args.mask,
                        color_match=args.color_match, upscaler=upscaler,
                        batch_size=args.batch_size or None).check()
    writers = []
    if args.out is not None:
        writers.append(Mp4Writer(args.out, fps=int(motion.fps)))
    if args.frames_dir is not None:
        writers.append(FrameSequenceWriter(args.frames_dir, fps=int(motion.fps)))
    width, height = video.size
    video.write(writers, audio=(waveform, sample_rate), callback=_progress("rendering frames"))
    where = " and ".join(str(p) for p in (args.out, args.frames_dir) if p is not None)
    print(f"wrote {where} ({video.num_frames} frames of {width}x{height} at {motion.fps:g} fps)", file=sys.stderr)
    return args.out or args.frames_dir


def main(argv: Optional[Sequence[str]] = None, prog: str = "anitalker") -> int:
    """The ``anitalker`` console script; the return value is the exit status (2: the user's input was wrong)."""
    args = build_parser(prog).parse_args(argv)
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
