"""Motion sampling as a stage: speech (+ optional pose, location and scale control) -> motion latents by the
diffusion motion generator, timed by one speech encoding and one denoiser call at the run's own sizes first."""

from __future__ import annotations

from typing import Optional

import torch

from ..audio.features import HUBERT_DIM, HUBERT_LAYERS, MFCC_DIM, ROWS_PER_FRAME
from ..diffusion.ddim import DEFAULT_STEPS, schedule
from ..diffusion.start_noise import DEFAULT_SEED_MODE, start_noise
from ..errors import AniTalkerError
from ..models.motion_generator import MotionGenerator
from ..models.variance_adapter import Attributes
from ..weights.variants import get_variant
from ..weights.files import HUBERT_DIR
from ..motion import control as control_mod
from ..types import FPS, MOTION_DIM, STYLE_DIM, AudioFeatures, Motion, PortraitCode, ProgressCallback, \
    VarianceControl
from ..video.renderer import model_device
from .estimate import FEWER_TAKES, SHORTER, Part, Step, measured_needs
from .measure import measure

AUDIO_ENCODERS = {"hubert": f"HuBERT audio encoder ({HUBERT_DIR})", "mfcc": "MFCC audio encoder"}


def check_compatible(generator: MotionGenerator, audio: AudioFeatures) -> None:
    needs = generator.audio_kind
    if audio.kind != needs:
        raise AniTalkerError(
            f"the motion generator '{generator.variant}' needs {needs.upper()} audio features, but the audio was "
            f"encoded with {audio.kind.upper()}; encode it with the {AUDIO_ENCODERS[needs]} or choose a stage-2 "
            f"file ending in _{audio.kind}.ckpt"
        )


def sampling_step(generator: MotionGenerator, frames: int, steps: int = DEFAULT_STEPS, takes: int = 1,
                  speech: Optional[torch.Tensor] = None) -> Step:
    """One speech encoding and one denoiser call over the run's frames and takes, in one pass as the run samples
    them (attention in the blocks of queries the run will use), times the steps. ``speech``: the features as the
    generator takes them; when not known yet, zeros of that shape that take no memory (the cost does not depend on
    the values)."""
    calls = len(schedule(steps))  # a step count no schedule gives fails here, before any warm-up
    device = model_device(generator)
    rows = ROWS_PER_FRAME[generator.audio_kind] * frames
    if speech is None:
        shape = (1, HUBERT_LAYERS, rows, HUBERT_DIM) if generator.audio_kind == "hubert" else (1, rows, MFCC_DIM)
        speech = torch.zeros(1, device=device).expand(shape)
    cond = generator.condition(speech[..., :rows, :].to(device), torch.zeros(1, STYLE_DIM, device=device),
                               torch.zeros(1, MOTION_DIM, device=device))
    x = torch.zeros(takes, frames, MOTION_DIM, device=device)
    t = torch.full((takes,), 500, dtype=torch.long, device=device)
    with torch.no_grad():
        encode = measure(lambda: generator.denoiser(cond), device)
        denoise = encode.value[0]
        first = measure(lambda: denoise(x, t), device)  # includes one-off set-up: its memory, not its time
        call = measure(lambda: denoise(x, t), device, memory=False)
    seconds = encode.seconds + calls * call.seconds
    what = f"sampler ({takes} take(s) x {frames} frames)"
    advice = FEWER_TAKES if takes > 1 else SHORTER
    needs = measured_needs(device, what, max(encode.host_bytes, first.host_bytes),
                           max(encode.device_bytes, first.device_bytes), advice)
    return Step((Part("sampling", seconds, f"{call.seconds:.2f} s/step"),), **needs)


def _given(control: VarianceControl, frames: int, takes: int, device: torch.device) -> tuple[Attributes, str]:
    """A control as the per-frame signals the variance adapter follows, for every take."""
    resolved = control_mod.resolve(control, frames)
    per_take = [t.to(device).expand(takes, -1, -1) for t in (resolved.pose, resolved.location, resolved.scale)]
    return Attributes(*per_take), "\n".join(n for n in (control.note, resolved.note) if n)


def _motion_attributes(used: Attributes, takes: int) -> dict[str, torch.Tensor]:
    """The variance adapter's attributes as Motion fields: (takes, frames, k) on the CPU, pose in degrees."""
    fields = {"pose_deg": (used.pose, control_mod.POSE_LIMIT), "location": (used.location, 1.0),
              "scale": (used.scale, 1.0)}
    return {name: (value.float() * unit).expand(takes, -1, -1).cpu().contiguous()
            for name, (value, unit) in fields.items() if value is not None}


class MotionSampling:
    """``takes`` motions for a portrait and its speech features (seeds ``seed``, ``seed + 1``, ...); the Motion
    also carries the pose, location and scale the variance adapter used for each take."""

    def __init__(self, generator: MotionGenerator, portrait: PortraitCode, audio: AudioFeatures,
                 control: Optional[VarianceControl] = None, seed: int = 0, steps: int = DEFAULT_STEPS,
                 takes: int = 1, seed_mode: str = DEFAULT_SEED_MODE) -> None:
        check_compatible(generator, audio)  # refuse what the sampler cannot take, before any network runs
        if takes < 1:
            raise AniTalkerError(f"takes must be at least 1, got {takes}")
        if audio.num_frames < 1:
            raise AniTalkerError("the audio is shorter than one video frame (40 ms); give a longer clip")
        schedule(steps)
        self.generator, self.portrait, self.audio, self.control = generator, portrait, audio, control
        self.seed, self.steps, self.takes, self.seed_mode = seed, steps, takes, seed_mode
        self.device = model_device(generator)

    def estimate(self) -> Step:
        return sampling_step(self.generator, self.audio.num_frames, self.steps, self.takes,
                             speech=self.audio.values.unsqueeze(0))

    def run(self, callback: Optional[ProgressCallback] = None) -> Motion:
        generator, frames, takes, device = self.generator, self.audio.num_frames, self.takes, self.device
        notes = [self.audio.note]
        given = None
        if self.control is not None and not get_variant(generator.variant).has_control:
            notes.append("this motion generator (audio only) has no pose/location/scale control; the control is "
                         "ignored")
        elif self.control is not None:
            given, note = _given(self.control, frames, takes, device)
            notes.append(note)
        noise = start_noise(generator.variant, frames, self.seed, takes, self.seed_mode)
        # speech batched the way the generator takes it: hubert (1,25,2F,1024); mfcc (1,4F,39)
        cond = generator.condition(self.audio.values.unsqueeze(0).to(device), self.portrait.wa.to(device),
                                   self.portrait.alpha0.to(device), given)
        latents, used = generator.sample(cond, noise.to(device), steps=self.steps, callback=callback)
        return Motion(
            latents=latents.float().cpu(),
            fps=FPS,
            variant=generator.variant,
            alpha0=self.portrait.alpha0.detach().cpu(),
            seeds=tuple(self.seed + i for i in range(takes)),
            note="\n".join(n for n in notes if n),
            **_motion_attributes(used, takes),
        )
