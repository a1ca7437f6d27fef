"""The headless path: weights loaded once per process (``LoadedModels``), one clip animated with them
(``animate_clip``).

``anitalker animate`` is "load, then one clip"; a batch worker (``batch``) keeps one ``LoadedModels`` across
its rows, so a hundred clips cost one load per worker instead of a hundred. The clip's options arrive as the
``animate`` command's namespace, whichever way they were given (command line or manifest row), so every
option means the same in both.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch

from ..device_policy import describe, render_precision, resolve_device
from ..errors import AniTalkerError
from ..models.variants import get_variant
from ..types import Motion, ProgressCallback

Progress = Callable[[str], ProgressCallback]
"""Makes the progress callback of one stage from its description ("sampling motion", "rendering frames")."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def tqdm_progress(desc: str, leave: bool = True) -> ProgressCallback:
    """A terminal progress bar as a core progress callback (done, total)."""
    from tqdm.auto import tqdm

    bar = tqdm(desc=desc, unit="it", leave=leave)

    def callback(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return callback


def weight_names(variant: str) -> list[str]:
    """The files under the models folder that animating with ``variant`` reads."""
    from ..models.weight_files import HUBERT_DIR, STAGE1, STAGE2

    return [STAGE1, STAGE2[variant]] + ([HUBERT_DIR] if get_variant(variant).audio == "hubert" else [])


def weight_files(models_dir: Path, variant: str, allow_download: bool = True,
                 log: Callable[[str], None] = _stderr) -> dict[str, Path]:
    """{name: path} of the variant's weights, downloaded if missing and allowed; a wrong HuBERT fails here,
    before anything is loaded."""
    from ..audio.features import check_hubert_config
    from ..models.weight_files import HUBERT_DIR, ensure_files

    files = ensure_files(weight_names(variant), models_dir, allow_download=allow_download, log=log)
    if HUBERT_DIR in files:
        check_hubert_config(files[HUBERT_DIR])
    return files


class LoadedModels:
    """The weights one process animates with, each loaded when a clip first needs it.

    One instance has one device and render precision; it holds the renderer, a motion generator per variant,
    the speech encoder (HuBERT or MFCC) and upscale models by file. ``keep=False`` is for a single clip: every
    model is handed out without being held, so the speech encoder and the generator are freed once used and
    rendering has their memory, as before batches existed.
    """

    def __init__(self, models_dir: Path, device: Union[str, torch.device] = "auto", precision: str = "auto",
                 allow_download: bool = True, keep: bool = True,
                 log: Callable[[str], None] = _stderr) -> None:
        self.models_dir = Path(models_dir)
        self.device = resolve_device(device)
        self.precision = render_precision(precision, self.device)
        self.allow_download, self.keep, self.log = allow_download, keep, log
        self._files: dict[str, dict[str, Path]] = {}
        self._models: dict[tuple, object] = {}

    def files(self, variant: str) -> dict[str, Path]:
        if variant not in self._files:
            self._files[variant] = weight_files(self.models_dir, variant, self.allow_download, self.log)
        return self._files[variant]

    def _get(self, key: tuple, load: Callable[[], object]):
        if key in self._models:
            return self._models[key]
        model = load()
        if self.keep:
            self._models[key] = model
        return model

    def renderer(self, variant: str):
        from ..models.checkpoints import load_stage1
        from ..models.weight_files import STAGE1

        def load():
            self.log(describe(self.device, self.precision))  # once the inputs are known to be usable
            return load_stage1(self.files(variant)[STAGE1], device=self.device, precision=self.precision.name)

        return self._get(("renderer",), load)

    def generator(self, variant: str):
        from ..models.checkpoints import load_stage2
        from ..models.weight_files import STAGE2

        return self._get(("generator", variant),
                         lambda: load_stage2(self.files(variant)[STAGE2[variant]], device=self.device))

    def speech_encoder(self, variant: str):
        from ..audio.features import HubertFeatures, MfccFeatures
        from ..models.weight_files import HUBERT_DIR

        if get_variant(variant).audio == "hubert":
            return self._get(("hubert",), lambda: HubertFeatures(self.files(variant)[HUBERT_DIR], device=self.device))
        return self._get(("mfcc",), MfccFeatures)

    def upscaler(self, path: Path):
        from ..image.upscale import load_upscale_model

        path = Path(path).resolve()
        return self._get(("upscaler", path), lambda: load_upscale_model(path, device=self.device))


def parse_box(text: Optional[str]) -> Optional[tuple[int, int, int]]:
    if not text:
        return None
    try:
        x, y, size = (int(v) for v in text.split(","))
    except ValueError:
        raise AniTalkerError(f"--box must be 'x,y,size' in portrait pixels, e.g. 120,80,400; got {text!r}") from None
    return x, y, size


def load_image(path: Path) -> torch.Tensor:
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


def _calm_and_keep(args: argparse.Namespace, motion: Motion, waveform: torch.Tensor, sample_rate: int,
                   say: Callable[[str], None]) -> Motion:
    """--calm-silence, then --save-motion: the file holds exactly the motion that is rendered."""
    if args.calm_silence:
        from ..audio.voice_activity import detect_voice_activity
        from ..motion.calm_silence import calm_silence

        activity = detect_voice_activity(waveform, sample_rate, motion.num_frames, motion.fps,
                                         min_pause_s=args.calm_min_pause)
        motion = calm_silence(motion, activity, strength=args.calm_silence)
        say(motion.note)
    if args.save_motion:
        from ..motion.files import save_motion

        say(f"saved the motion to {save_motion(motion, args.save_motion)}")
    return motion


def _estimate(args: argparse.Namespace, encoder, waveform: torch.Tensor, sample_rate: int, generator,
              clip, say: Callable[[str], None]) -> None:
    """Before the long work: say how long the run will take and its peak memory; refuse it when it cannot fit."""
    from ..stages.estimate import animation_run

    writers = [kind for kind, path in (("mp4", args.out), ("png", args.frames_dir)) if path is not None]
    run = animation_run(encoder, waveform, sample_rate, generator, args.steps, clip, writers or ["mp4"])
    say(run.summary())
    if getattr(args, "memory_check", True):
        run.check()


def animate_clip(models: LoadedModels, args: argparse.Namespace, progress: Optional[Progress] = None,
                 say: Callable[[str], None] = _stderr, estimate: bool = False) -> Optional[Path]:
    """One portrait and one speech file -> the mp4 at ``args.out`` and/or the PNGs in ``args.frames_dir``.

    ``args`` holds the ``animate`` command's options; ``say`` receives the notes meant for the user.
    Each output is written under a temporary name and renamed when complete. ``estimate``: once the models are
    loaded, measure a short warm-up and say how long the run will take and how much memory it needs, refusing
    it when it cannot fit; with ``args.dry_run`` stop there (returns None). Batch rows skip it: their first
    clip is the measurement.
    """
    from ..audio.waveform import load_audio_file
    from ..motion import control as control_mod
    from ..pipeline import features_from_audio, generate_motion, motion_take, portrait_from_image
    from ..stages.estimate import clip_frames, stand_in_latents
    from ..video.video_render import VideoRender
    from ..video.writers import FrameSequenceWriter, Mp4Writer

    dry_run = estimate and getattr(args, "dry_run", False)
    if args.out is None and args.frames_dir is None and not dry_run:
        raise AniTalkerError("nothing to write: give --out FILE.mp4, --frames-dir DIR, or both")
    stage = progress or (lambda desc: None)
    models.files(args.variant)

    # Read the inputs first: a bad portrait or audio fails in a second, not after loading 1 GB of weights.
    image = load_image(args.portrait)
    waveform, sample_rate = load_audio_file(args.audio)
    if not 0 <= args.feather <= 0.5:
        raise AniTalkerError(f"--feather {args.feather} must be between 0 and 0.5 (a fraction of the crop side)")
    upscaler = None
    if args.upscale_model is not None:
        upscaler = models.upscaler(args.upscale_model)
        say(f"upscale model: {upscaler.name}")

    renderer = models.renderer(args.variant)
    portrait = portrait_from_image(renderer, image, crop_mode=args.crop, box=parse_box(args.box))
    if portrait.note:
        say(portrait.note)

    encoder = models.speech_encoder(args.variant)
    generator = models.generator(args.variant)
    # The video as it will be written, with stand-in motion of the clip's length until the motion is sampled.
    clip = VideoRender(renderer, portrait, stand_in_latents(portrait, clip_frames(waveform.shape[-1], sample_rate)),
                       original=image if args.paste_back else None, feather=args.feather, mask=args.mask,
                       color_match=args.color_match, upscaler=upscaler, batch_size=args.batch_size or None).check()
    if estimate:
        _estimate(args, encoder, waveform, sample_rate, generator, clip, say)
        if dry_run:
            say("dry run: nothing was written")
            return None

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
    motion = generate_motion(generator, portrait, audio, control=control, seed=args.seed, steps=args.steps,
                             seed_mode=args.seed_mode, callback=stage("sampling motion"))
    del generator, audio
    if motion.note:
        say(motion.note)
    motion = _calm_and_keep(args, motion, waveform, sample_rate, say)

    video = replace(clip, latents=motion_take(motion, 0), fps=motion.fps).check()
    writers = []
    if args.out is not None:
        writers.append(Mp4Writer(args.out, fps=int(motion.fps)))
    if args.frames_dir is not None:
        writers.append(FrameSequenceWriter(args.frames_dir, fps=int(motion.fps)))
    width, height = video.size
    video.write(writers, audio=(waveform, sample_rate), callback=stage("rendering frames"))
    where = " and ".join(str(p) for p in (args.out, args.frames_dir) if p is not None)
    say(f"wrote {where} ({video.num_frames} frames of {width}x{height} at {motion.fps:g} fps)")
    return args.out or args.frames_dir
