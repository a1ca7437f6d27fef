"""The headless path: weights loaded once per process (``LoadedModels``), one clip animated with them
(``animate_clip``).

``anitalker animate`` is "load, then one clip"; a batch worker keeps one ``LoadedModels`` across its rows, so a
hundred clips cost one load per worker instead of a hundred. The clip's options arrive as ``ClipOptions``,
whichever way they were given (command line or manifest row), so every option means the same in both.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Union

import numpy as np
import torch

from ..device_policy import describe, render_precision, resolve_device
from ..errors import AniTalkerError
from ..models.variants import get_variant
from ..options import ClipOptions
from ..types import ProgressCallback

if TYPE_CHECKING:  # loaded with the models, not with the command
    from ..image.face_restore import FaceRestorer
    from ..image.upscale import Upscaler
    from ..video.video_render import OutputPixels

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
    the speech encoder (HuBERT or MFCC) and upscale and face-restoration models by file. ``keep=False`` is for a
    single clip: every model is handed out without being held, so the speech encoder and the generator are freed
    once used and rendering has their memory.
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
        """The upscale or face-restoration model in ``path`` (spandrel tells which)."""
        from ..image.upscale import load_upscale_model

        path = Path(path).resolve()
        return self._get(("upscaler", path), lambda: load_upscale_model(path, device=self.device))


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


def is_prores(path: Optional[Path]) -> bool:
    return path is not None and path.suffix.lower() == ".mov"


def outputs_of(clip: ClipOptions) -> tuple[list, OutputPixels]:
    """What the clip writes (the kinds ``VideoWrite`` estimates) and the pixels they need: the most precise samples
    any of them keeps, and the matte as a fourth channel when one writes it. Options that would be ignored, or
    that no output can honour, are refused here, before any work."""
    from ..image.pixels import widest
    from ..video.frame_sequence import SEQUENCE_SAMPLES, SequenceOptions, check_sequence_folder
    from ..video.video_render import OutputPixels

    kinds: list = []
    samples = []
    sequence = clip.sequence
    if clip.frames_dir is not None:
        sequence.check()
        check_sequence_folder(clip.frames_dir)
        kinds.append(sequence)
        samples.append(SEQUENCE_SAMPLES[sequence.format])
    else:
        default = SequenceOptions()
        if (sequence.format, sequence.first_frame) != (default.format, default.first_frame):
            raise AniTalkerError("--frame-format and --first-frame describe the images of --frames-dir; give "
                                 "--frames-dir DIR too, or leave them out")
        if clip.matte == "separate":
            raise AniTalkerError("--matte separate writes matte_<number>.png beside the images of --frames-dir; give "
                                 "--frames-dir DIR too")
        if clip.matte == "alpha" and not is_prores(clip.out):
            raise AniTalkerError(f"an H.264 mp4 has no alpha channel, so --matte alpha cannot go into {clip.out}; "
                                 "write --out clip.mov (ProRes 4444 with alpha) or --frames-dir DIR")
    if clip.head_only and clip.matte == "none":
        raise AniTalkerError("--head-only needs a matte to say where the head is: add --matte alpha (or separate)")
    if clip.out is not None:
        kinds.append("mov" if is_prores(clip.out) else "mp4")
        samples.append("uint16" if is_prores(clip.out) else "uint8")
    return kinds, OutputPixels(widest(samples), clip.matte != "none", clip.head_only)


def image_models(models: LoadedModels, clip: ClipOptions) -> tuple[Optional[FaceRestorer], Optional[Upscaler]]:
    """The clip's face model and upscale model, whichever of --face-restore and --upscale-model named each."""
    from ..image.face_restore import FaceRestorer
    from ..image.upscale import split_models

    given = [(flag, path) for flag, path in (("--upscale-model", clip.upscale_model),
                                             ("--face-restore", clip.face_restore)) if path is not None]
    loaded = [(flag, models.upscaler(path)) for flag, path in given]
    for flag, model in loaded:
        if flag == "--face-restore" and not isinstance(model, FaceRestorer):
            raise AniTalkerError(f"--face-restore {clip.face_restore} is an upscale model ({model.name}), not a "
                                 "face-restoration model (GFPGAN, RestoreFormer, CodeFormer); give it to "
                                 "--upscale-model")
    return split_models(loaded)


def animate_clip(models: LoadedModels, clip: ClipOptions, progress: Optional[Progress] = None,
                 say: Callable[[str], None] = _stderr, estimate: bool = False, dry_run: bool = False,
                 memory_check: bool = True) -> Optional[Path]:
    """One portrait and one speech file -> the video at ``clip.out`` (mp4, or ProRes mov) and/or the image sequence
    in ``clip.frames_dir``.

    ``say`` receives the notes meant for the user. Each output is written under a temporary name and renamed
    when complete. ``estimate``: once the models are loaded, measure a short warm-up and say how long the run
    will take and how much memory it needs, refusing it when it cannot fit (unless ``memory_check`` is off);
    ``dry_run`` stops there (returns None). Batch rows skip the estimate: their first clip is the measurement.
    """
    from ..audio.waveform import load_audio_file
    from ..motion.files import save_motion
    from ..pipeline import Animation, Conversation
    from ..video.frame_sequence import FrameSequenceWriter
    from ..video.writers import Mp4Writer, ProResWriter

    if clip.portrait is None or (clip.audio is None) == (not clip.speaker):
        raise AniTalkerError("a clip needs a portrait and either a speech recording (--audio FILE) or, for a "
                             "conversation, one --speaker FACE:FILE per face (not both)")
    if clip.speaker and clip.save_motion:
        raise AniTalkerError("--save-motion saves the motion of one face; a conversation has one per --speaker: "
                             "leave it out, or animate each face alone with --face N --audio FILE")
    if clip.out is None and clip.frames_dir is None and not (estimate and dry_run):
        raise AniTalkerError("nothing to write: give --out FILE.mp4 (or .mov), --frames-dir DIR, or both")
    kinds, pixels = outputs_of(clip)
    stage = progress or (lambda desc: None)
    models.files(clip.variant)

    # Read the inputs first: a bad portrait or audio fails in a second, not after loading 1 GB of weights.
    image = load_image(clip.portrait)
    speakers = [(face, *load_audio_file(path)) for face, path in clip.speaker]
    if not speakers:
        waveform, sample_rate = load_audio_file(clip.audio)
    clip.paste.check()
    clip.restore.check()
    restorer, upscaler = image_models(models, clip)
    for what, model in (("face model", restorer), ("upscale model", upscaler)):
        if model is not None:
            say(f"{what}: {model.name}")
    loaded = (models.renderer(clip.variant), models.generator(clip.variant), models.speech_encoder(clip.variant),
              image)
    if speakers:
        animation = Conversation(*loaded, speakers, clip, upscaler, restorer, pixels)
        (waveform, sample_rate), note = animation.audio, animation.note
    else:
        animation = Animation(*loaded, waveform, sample_rate, clip, upscaler, restorer, pixels)
        note = animation.portrait.note
    if note:
        say(note)
    if estimate:
        run = animation.estimate(kinds or ["mp4"])
        say(run.summary())
        if memory_check:
            run.check()
        if dry_run:
            say("dry run: nothing was written")
            return None

    motion = animation.motion(stage)
    for take in (motion if speakers else [motion]):
        if take.note:
            say(take.note)
    if clip.save_motion:
        say(f"saved the motion to {save_motion(motion, clip.save_motion)}")  # exactly the motion that is rendered
    video = animation.video(motion)
    fps = video.clip.fps
    writers = []
    if clip.out is not None:
        writers.append(ProResWriter(clip.out, fps=round(fps), alpha=clip.matte == "alpha")
                       if is_prores(clip.out) else Mp4Writer(clip.out, fps=round(fps)))
    if clip.frames_dir is not None:
        writers.append(FrameSequenceWriter(clip.frames_dir, fps=round(fps), options=clip.sequence,
                                           layout=video.clip.layout()))
    width, height = video.clip.size
    video.run(writers, audio=(waveform, sample_rate), callback=stage("rendering frames"))
    where = " and ".join(str(p) for p in (clip.out, clip.frames_dir) if p is not None)
    say(f"wrote {where} ({video.clip.num_frames} frames of {width}x{height} at {fps:g} fps)")
    return clip.out or clip.frames_dir
