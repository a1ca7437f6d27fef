"""What one clip is made with, as data.

``ClipOptions`` is the one definition of a clip's options: the command line builds its flags from these fields,
a batch manifest parses its cells with them, and the core takes the record. Each field's metadata holds its
help text and how a text value becomes the value (``parse``), so a new option works on the command line and
in manifests at once, and every default has its one home (the field, or the module it names).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Optional

from .audio.voice_activity import MIN_PAUSE_S
from .diffusion.ddim import DEFAULT_STEPS, step_counts_text
from .diffusion.start_noise import DEFAULT_SEED_MODE, SEED_MODES
from .errors import AniTalkerError
from .image.face_restore import RestoreOptions
from .image.face_track import FollowOptions
from .image.paste_back import MASKS, MAX_FEATHER, PasteOptions
from .image.portrait_crop import CROP_MODES
from .weights.variants import DEFAULT_VARIANT, STAGE2_VARIANTS
from .motion.control import CENTRE, make_control
from .motion.dub import BLINKS, EXTENDS, DubOptions
from .types import VarianceControl
from .video.frame_sequence import FRAME_FORMATS, MATTES, MAX_FIRST_FRAME, SequenceOptions

PASTE = PasteOptions()
FOLLOW = FollowOptions()
DUB = DubOptions()
SEQUENCE = SequenceOptions()
RESTORE = RestoreOptions()
BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


class OptionError(AniTalkerError):
    """A value an option cannot take; the message says what it takes."""


Parse = Callable[[str], Any]


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise OptionError(f"expected a whole number, got {text!r}") from None


def number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise OptionError(f"expected a number, got {text!r}")
    return value


def number_in(low: float, high: float) -> Parse:
    def parse(text: str) -> float:
        try:
            value = number(text)
        except OptionError:
            value = math.nan
        if not low <= value <= high:
            raise OptionError(f"expected a number from {low:g} to {high:g}, got {text!r}")
        return value

    return parse


def one_of(choices: tuple[str, ...]) -> Parse:
    def parse(text: str) -> str:
        if text not in choices:
            raise OptionError(f"expected one of {', '.join(choices)}, got {text!r}")
        return text

    return parse


def boolean(text: str) -> bool:
    try:
        return BOOLEANS[text.strip().lower()]
    except KeyError:
        raise OptionError(f"expected true/false, yes/no or 1/0, got {text!r}") from None


def frame_number(text: str) -> int:
    value = whole_number(text)
    if not 0 <= value <= MAX_FIRST_FRAME:
        raise OptionError(f"expected a frame number from 0 to {MAX_FIRST_FRAME}, got {text!r}")
    return value


def parse_box(text: str) -> tuple[int, int, int]:
    try:
        x, y, size = (int(v) for v in text.split(","))
    except ValueError:
        raise OptionError(f"expected 'x,y,size' in portrait pixels, e.g. 120,80,400; got {text!r}") from None
    return x, y, size


def as_text(value: str) -> str:
    return value


def frame_index(text: str) -> int:
    value = whole_number(text)
    if value < 0:
        raise OptionError(f"expected a frame number from 0, got {text!r}")
    return value


def positive_number(text: str) -> int:
    value = whole_number(text)
    if value < 1:
        raise OptionError(f"expected a whole number from 1, got {text!r}")
    return value


def face_number(text: str) -> int:
    value = whole_number(text)
    if value < 0:
        raise OptionError(f"expected 0 (the largest face), 1 (the leftmost), 2, ...; got {text!r}")
    return value


def speaker(text: str) -> tuple[int, Path]:
    """'FACE:FILE' -> (face number, recording)."""
    face, sep, path = text.partition(":")
    try:
        number = int(face)
    except ValueError:
        number = 0
    if not sep or not path or number < 1:
        raise OptionError(f"expected FACE:FILE, a face numbered from the left (1, 2, ...) and its speech, e.g. "
                          f"1:anna.wav; got {text!r}")
    return number, Path(path)


PARTS = ("input", "motion", "video", "footage")
"""What an option is about: the inputs (portrait, audio, crop), the motion (sampling, control, calm pauses), the
video made from it (files, paste back, upscale), or footage to dub (the video, the face followed in it, how its
motion and the speech's are put together). A command takes the parts it does: ``animate`` the first three,
``motion`` the inputs and the motion, ``render`` the inputs and the video, ``dub`` the footage, the motion and the
video (with the speech and the face of the inputs)."""


def _option(default: Any, help: str, parse: Parse, *, part: str, flag: Optional[str] = None,
            metavar: Optional[str] = None, choices: Optional[tuple[str, ...]] = None, column: bool = True,
            group: str = "clip", many: bool = False) -> Any:
    """A ClipOptions field: ``parse`` turns a command-line or manifest text into the value; ``part``: one of
    ``PARTS``; ``flag`` names a boolean's switch (``--paste-back`` sets it, ``--no-color-match`` clears it);
    ``column``: may a manifest row set it; ``group``: where the command's help lists it; ``many``: the flag may be
    given several times (the value is a tuple of parsed texts)."""
    assert part in PARTS, part
    return field(default=default, metadata=dict(help=help, parse=parse, part=part, flag=flag, metavar=metavar,
                                                choices=choices, column=column, group=group, many=many))


@dataclass(frozen=True)
class ClipOptions:
    """One portrait animated with one recording: the inputs, what to write, and how."""

    portrait: Optional[Path] = _option(None, "portrait image (any size; PNG/JPEG/WebP, alpha ok)", Path,
                                       part="input")
    audio: Optional[Path] = _option(None, "speech recording (wav, mp3, flac, m4a, ...)", Path, part="input")
    out: Optional[Path] = _option(None, "output .mp4 (H.264 + AAC), or .mov (ProRes 4444 + PCM, with --matte alpha "
                                        "its alpha); optional when --frames-dir is given", Path, part="video")
    frames_dir: Optional[Path] = _option(
        None, "also (or, without --out, only) write numbered images, audio.wav and sequence.json into this folder "
              "(new, empty, or an earlier sequence, replaced once the new one is complete)", Path, column=False,
        group="output", part="video")
    save_motion: Optional[Path] = _option(
        None, "also save the motion that is rendered as a .safetensors motion file (Save Motion's format)", Path,
        metavar="FILE", column=False, part="motion")

    variant: str = _option(DEFAULT_VARIANT, "stage-2 motion generator; mfcc_* need no HuBERT model",
                           one_of(STAGE2_VARIANTS), choices=STAGE2_VARIANTS, part="motion")
    steps: int = _option(DEFAULT_STEPS, f"diffusion steps: {DEFAULT_STEPS} is the official setting; "
                                        f"{step_counts_text()} (counts an even stride over the training steps "
                                        "gives)", whole_number, part="motion")
    seed: int = _option(0, "start noise of the motion sampler: the same seed, inputs and options give the same "
                           "motion; another seed gives another take of head motion and expression", whole_number,
                   part="motion")
    seed_mode: str = _option(DEFAULT_SEED_MODE,
                             "'official' reproduces the official demo's start noise for the same seed",
                             one_of(SEED_MODES), choices=SEED_MODES, part="motion")
    yaw: Optional[float] = _option(None, "head yaw in degrees (turns on pose control)", number, part="motion")
    pitch: Optional[float] = _option(None, "head pitch in degrees (turns on pose control)", number, part="motion")
    roll: Optional[float] = _option(None, "head roll in degrees (turns on pose control)", number, part="motion")
    location: Optional[float] = _option(None, "face location 0 (left) .. 1 (right)", number, part="motion")
    scale: Optional[float] = _option(None, "face scale 0 (small) .. 1 (large)", number, part="motion")
    keyframes: str = _option("", "control keyframes, e.g. '0: yaw=0; 2s: yaw=20 pitch=5; 100: yaw=-10 scale=0.6'",
                             as_text, part="motion")
    crop: str = _option("auto", "auto: find the face; full: use the whole image (already-cropped portraits); "
                                "manual: --box", one_of(CROP_MODES), choices=CROP_MODES, part="input")
    box: Optional[tuple[int, int, int]] = _option(None, "manual crop 'x,y,size' in portrait pixels", parse_box,
                                                  metavar="X,Y,SIZE", part="input")
    face: int = _option(0, "which face of the portrait (crop auto): 0 the largest, 1 the leftmost, 2 the second from "
                           "the left, ...", face_number, metavar="N", part="input")
    speaker: tuple[tuple[int, Path], ...] = _option(
        (), "a conversation: one face of the portrait (numbered from the left) and its own speech, e.g. --speaker "
            "1:anna.wav --speaker 2:ben.wav (instead of --audio); each face listens while the others speak (with "
            "--calm-silence), the video lasts as long as the longest track and carries them mixed", speaker,
        metavar="FACE:FILE", column=False, many=True, part="input")
    video: Optional[Path] = _option(None, "footage to dub: the speech goes onto the face in this video (mp4, mov, mkv, "
                                          "webm, ...); --face picks the face when there are several", Path,
                                    metavar="FILE", part="footage")
    portrait_frame: Optional[int] = _option(
        FOLLOW.portrait_frame, "frame of --video (from 0) the face's look is taken from (default: the first frame it "
                               "is clearly seen in)", frame_index, metavar="N", part="footage")
    detect_every: int = _option(FOLLOW.every, "look for the face in every Nth frame of --video and follow it in "
                                              "between (1: every frame)", positive_number, metavar="N",
                                part="footage")
    extend: str = _option(DUB.extend, "speech longer than --video: pingpong (forward, then backward), loop, or hold "
                                      "the last frame", one_of(EXTENDS), choices=EXTENDS, part="footage")
    continue_footage: bool = _option(DUB.continue_footage, "speech shorter than --video: the footage goes on as it "
                                                           "is, with its own sound (else the video ends with the "
                                                           "speech)", boolean, flag="--continue-footage",
                                     part="footage")
    keep_footage_audio: float = _option(DUB.footage_audio, "mix the footage's own sound under the speech at this "
                                                           "level (0 replaces it, 1 keeps it at full level)",
                                        number_in(0, 1), metavar="LEVEL", part="footage")
    blinks: str = _option(DUB.blinks, "the eyes' quick motion from the speech's motion or the footage's",
                          one_of(BLINKS), choices=BLINKS, part="footage")
    head_strength: float = _option(DUB.head, "the footage's head motion: 1 as it moves, 0 its average pose held",
                                   number_in(0, 2), metavar="S", part="footage")
    mouth_strength: float = _option(DUB.mouth, "the speech's mouth motion: 1 as sampled, lower calmer",
                                    number_in(0, 2), metavar="S", part="footage")
    batch_size: int = _option(0, "frames rendered per batch (0 = auto)", whole_number, part="video")
    calm_silence: float = _option(0.0, "in the speaker's pauses let the mouth settle and the head hold still: 0 off "
                                       "(default) to 1 fully calm", number_in(0, 1), metavar="STRENGTH",
                                  part="motion")
    calm_min_pause: float = _option(MIN_PAUSE_S, "shortest silence that --calm-silence treats as a pause",
                                    number_in(0, 60), metavar="SECONDS", part="motion")

    paste_back: bool = _option(False, "paste the animated head back into the portrait at its original size",
                               boolean, flag="--paste-back", group="output", part="video")
    upscale_model: Optional[Path] = _option(
        None, "upscale model file (e.g. RealESRGAN_x2.pth) applied to the 256x256 frames (to the restored face with "
              "--face-restore) before paste back; a face-restoration file here acts as --face-restore",
        Path, group="output", part="video")
    face_restore: Optional[Path] = _option(
        None, "face-restoration model file (GFPGANv1.4.pth, RestoreFormer; CodeFormer with spandrel_extra_arches): "
              "each 256x256 head becomes a sharp 512x512 face before any upscale and paste back, like the official "
              "--face_sr; without --paste-back the video is 512x512", Path, metavar="FILE", group="output",
        part="video")
    restore_strength: float = _option(RESTORE.strength, "blend of the restored face with the plain bicubic resize: 1 "
                                                        "the model's face, 0 none of it", number_in(0, 1),
                                      metavar="S", group="output", part="video")
    codeformer_fidelity: float = _option(RESTORE.fidelity, "CodeFormer's fidelity weight: 0 its own sharp face, 1 "
                                                           "closest to the render (other face models have none)",
                                         number_in(0, 1), metavar="W", group="output", part="video")
    feather: float = _option(PASTE.feather, "paste-back soft edge, fraction of the crop side",
                             number_in(0, MAX_FEATHER), group="output", part="video")
    mask: str = _option(PASTE.mask, "paste-back mask: head (soft ellipse around the head) or box (the whole "
                                    "square crop)", one_of(MASKS), choices=MASKS, group="output", part="video")
    color_match: bool = _option(PASTE.color_match, "paste back without matching the rendered colours to the "
                                                   "picture", boolean, flag="--no-color-match", group="output",
                                part="video")
    frame_format: str = _option(SEQUENCE.format, "image format of --frames-dir: png (8-bit), png16 (16-bit), exr "
                                                 "(half float), jpg", one_of(FRAME_FORMATS), choices=FRAME_FORMATS,
                                column=False, group="output", part="video")
    first_frame: int = _option(SEQUENCE.first_frame, "number of the first image of --frames-dir (e.g. 1001)",
                               frame_number, metavar="N", column=False, group="output", part="video")
    matte: str = _option(SEQUENCE.matte, "the head's matte (1 = the animated head): alpha = the alpha channel of the "
                                         "--frames-dir images and of a .mov --out; separate = matte_<number>.png "
                                         "beside the images", one_of(MATTES), choices=MATTES, column=False,
                         group="output", part="video")
    head_only: bool = _option(SEQUENCE.head_only, "the rendered head alone over transparency (with --matte) "
                                                  "instead of the head pasted into the picture", boolean,
                              flag="--head-only", column=False, group="output", part="video")

    @property
    def paste(self) -> PasteOptions:
        return PasteOptions(self.feather, self.mask, self.color_match)

    @property
    def follow(self) -> FollowOptions:
        return FollowOptions(self.face, self.portrait_frame, self.detect_every)

    @property
    def dub(self) -> DubOptions:
        return DubOptions(self.extend, self.continue_footage, self.blinks, self.head_strength, self.mouth_strength,
                          self.keep_footage_audio)

    @property
    def sequence(self) -> SequenceOptions:
        return SequenceOptions(self.frame_format, self.matte, self.first_frame, self.head_only)

    @property
    def restore(self) -> RestoreOptions:
        return RestoreOptions(self.restore_strength, self.codeformer_fidelity)

    def control(self) -> Optional[VarianceControl]:
        """The variance control these options ask for; None when no pose, location, scale or keyframe is given."""
        values = (self.yaw, self.pitch, self.roll, self.location, self.scale)
        if all(v is None for v in values) and not self.keyframes:
            return None
        return make_control(yaw=self.yaw or 0.0, pitch=self.pitch or 0.0, roll=self.roll or 0.0,
                            location=CENTRE if self.location is None else self.location,
                            scale=CENTRE if self.scale is None else self.scale, keyframes=self.keyframes)

    def with_cells(self, cells: dict[str, str]) -> "ClipOptions":
        """These options with ``{field: text}`` parsed over them (a manifest row's cells); an OptionError names
        the field."""
        values = {}
        for name, value in cells.items():
            try:
                values[name] = OPTION_FIELDS[name].metadata["parse"](value)
            except OptionError as exc:
                raise OptionError(f"{name}: {exc}") from None
        return replace(self, **values)


OPTION_FIELDS = {f.name: f for f in fields(ClipOptions)}
"""Every clip option by name, with its metadata."""
COLUMNS = tuple(name for name, f in OPTION_FIELDS.items() if f.metadata["column"])
"""What a manifest row may set."""
