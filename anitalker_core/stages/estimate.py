"""How long a run will take and how much memory it needs, known before the long work starts.

A run is a few steps: speech features, sampling, rendering with its output (upscale, paste back, encoding).
Each step is timed on the real device by a short warm-up at the run's own sizes (the first batches of frames at
the run's batch size, one denoiser call at the run's sequence length, two short pieces of the speech, one batch
through upscale, paste back and the encoder at the output size) and scaled by the clip's length. Memory is what
the warm-up's tensors took at their peak (see ``measure``) plus what grows with the clip, from its size (IMAGE
outputs, speech features), on top of what the process already holds. A run that would not fit in the memory
available is refused at once with what to change (``ResourceError``), instead of failing at the end.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, replace
from itertools import chain
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch

from ..audio.features import HUBERT_DIM, HUBERT_HZ, HUBERT_LAYERS, MFCC_DIM, RATE, ROWS_PER_FRAME
from ..audio.waveform import prepare_waveform
from ..device_policy import default_batch_size
from ..diffusion.ddim import schedule
from ..diffusion.sampling import windows
from ..errors import ResourceError
from ..image.paste_back import PASTE_CHUNK, Compositor, check_image_frames
from ..models.motion_autoencoder import MotionAutoencoder
from ..models.motion_generator import MotionGenerator
from ..pipeline import check_sampling
from ..types import FPS, MOTION_DIM, STYLE_DIM, AudioFeatures, CropBox, PortraitCode
from ..video.renderer import batch_plan, iter_frames, model_device
from ..video.video_render import VideoRender
from .measure import Measured, device_available, device_in_use, host_available, measure, resident_memory

MARGIN = 0.15
"""A run fits when the memory it adds, plus 15 %, stays within what is available: room for allocator slack and
for the estimate's own error (measured in README *Know before you wait*)."""
WARMUP_FRAMES = 6
"""The renderer is timed on its first batches, at least two, until this many frames. The first batch pays one-off
set-up (kernel choice, caches, fresh memory), so the batches after it are the ones that count."""
SPEECH_PIECES_S = (0.5, 2.0)
"""Seconds of speech the feature extractor is timed on: two lengths give its cost per pass and per second."""
MP4_ENCODER_FRAMES = 120
"""Frames (yuv420) that libx264 (preset medium) holds for look-ahead, references and its threads; measured at
256x256 to 1920x1080 on 2 cores (bench/estimate.py)."""
WRITER_PIECES = 4
"""Output pieces alive at once on the video path: two queued for the writer thread, one being encoded, one made."""

STREAM = ("use Render Video instead of an IMAGE batch: it streams the frames into the file, so memory stays that "
          "of one batch whatever the length (headless: --frames-dir for image files)")
SHORTER = "use a shorter clip, or split the audio and animate the parts one after another"
SMALLER_BATCH = "use a smaller batch size (batch_size on the node, --batch-size headless)"
LOWER_PRECISION = "render in fp16 or bf16 (the renderer loader's precision, --precision headless)"
FEWER_TAKES = "sample fewer takes at once, or a shorter clip"


@dataclass(frozen=True)
class Need:
    """One item of memory a step needs beyond what the process held before the run; ``advice`` says what to
    change when this item is what does not fit."""

    what: str
    nbytes: int
    advice: str


@dataclass(frozen=True)
class Part:
    """Time of one part of a step, e.g. ("rendering", 130.0, "0.52 s/frame")."""

    name: str
    seconds: float
    detail: str = ""


@dataclass(frozen=True)
class Step:
    """One stage of a run: its time, the memory it needs at its peak (host RAM and, on a GPU, device memory), and
    what it leaves for the next step (``keeps``: e.g. the speech features, which sampling reads)."""

    parts: tuple[Part, ...]
    host: tuple[Need, ...] = ()
    device: tuple[Need, ...] = ()
    keeps: tuple[Need, ...] = ()
    seconds: Optional[float] = None
    """The step's wall time when its parts overlap (a GPU renders while the CPU encodes); else their sum."""

    @property
    def wall_s(self) -> float:
        return self.seconds if self.seconds is not None else sum(p.seconds for p in self.parts)


@dataclass(frozen=True)
class RunEstimate:
    """Time and peak memory of a run on this device, and whether it fits in the memory available.

    ``host_in_use``/``device_in_use``: what the process holds now; the steps' needs come on top. ``*_available``:
    what the system can still give (None: unknown, and an unknown amount never refuses a run).
    """

    steps: tuple[Step, ...]
    device: str
    host_in_use: int
    host_available: Optional[int]
    device_in_use: int = 0
    device_available: Optional[int] = None

    @property
    def seconds(self) -> float:
        return sum(s.wall_s for s in self.steps)

    def _peak(self, kind: str) -> tuple[Need, ...]:
        """The needs at the run's peak: each step's own plus what the step before keeps for it."""
        best: tuple[Need, ...] = ()
        kept: tuple[Need, ...] = ()
        for step in self.steps:
            needs = (kept if kind == "host" else ()) + getattr(step, kind)
            if sum(n.nbytes for n in needs) >= sum(n.nbytes for n in best):
                best = needs
            kept = step.keeps
        return best

    @property
    def host_needs(self) -> tuple[Need, ...]:
        return self._peak("host")

    @property
    def device_needs(self) -> tuple[Need, ...]:
        return self._peak("device")

    @property
    def host_extra(self) -> int:
        """Bytes of RAM the run adds at its peak."""
        return sum(n.nbytes for n in self.host_needs)

    @property
    def device_extra(self) -> int:
        return sum(n.nbytes for n in self.device_needs)

    @property
    def host_peak(self) -> int:
        return self.host_in_use + self.host_extra

    @property
    def device_peak(self) -> int:
        return self.device_in_use + self.device_extra

    @property
    def fits_host(self) -> bool:
        return self.host_available is None or self.host_extra * (1 + MARGIN) <= self.host_available

    @property
    def fits_device(self) -> bool:
        return self.device_available is None or self.device_extra * (1 + MARGIN) <= self.device_available

    @property
    def fits(self) -> bool:
        return self.fits_host and self.fits_device

    @property
    def device_memory(self) -> str:
        return f"GPU memory ({self.device})" if self.device.startswith("cuda") else f"{self.device} memory"

    def summary(self) -> str:
        """One line for the node and the terminal: time by part, peak memory and what is available."""
        parts = [p for s in self.steps for p in s.parts if p.seconds > 0]
        detail = ", ".join(f"{p.name} {duration(p.seconds)}" + (f" at {p.detail}" if p.detail else "")
                           for p in parts)
        text = f"estimate: about {duration(self.seconds)}" + (f" ({detail})" if len(parts) > 1 or detail else "")
        text += (f"; RAM {size(self.host_peak)} at the peak (+{size(self.host_extra)}), "
                 f"{size(self.host_available) if self.host_available is not None else 'unknown'} available")
        if self.device_available is not None or self.device_extra:
            text += (f"; {self.device_memory} {size(self.device_peak)} at the peak (+{size(self.device_extra)}), "
                     f"{size(self.device_available) if self.device_available is not None else 'unknown'} free")
        return text

    def check(self) -> "RunEstimate":
        """This estimate, or ``ResourceError`` naming the figures and what to change when the run cannot fit."""
        if not self.fits_host:
            raise ResourceError(_refusal("RAM", self.host_needs, self.host_extra, self.host_in_use,
                                         self.host_available))
        if not self.fits_device:
            raise ResourceError(_refusal(self.device_memory, self.device_needs, self.device_extra,
                                         self.device_in_use, self.device_available))
        return self

    def remeasured(self) -> "RunEstimate":
        """The same needs against what is in use and available now (e.g. after the host application made room)."""
        return replace(self, host_in_use=resident_memory(), host_available=host_available(),
                       device_in_use=device_in_use(torch.device(self.device)),
                       device_available=device_available(torch.device(self.device)))


def _refusal(memory: str, needs: Sequence[Need], extra: int, in_use: int, available: Optional[int]) -> str:
    top = sorted(needs, key=lambda n: n.nbytes, reverse=True)
    items = "; ".join(f"{n.what} {size(n.nbytes)}" for n in top[:3])
    return (f"not enough memory for this run: at its peak it needs about {size(extra)} more {memory} than the "
            f"{size(in_use)} in use ({items}), but {size(available or 0)} is available (with a {MARGIN:.0%} margin). "
            f"To fit, {top[0].advice}; or free memory by closing other programs.")


def duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s} s" if s else f"{m} min"
    h, m = divmod(m, 60)
    return f"{h} h {m} min"


def size(nbytes: float) -> str:
    if nbytes >= 1e9:
        return f"{nbytes / 1e9:.1f} GB"
    return f"{nbytes / 1e6:.0f} MB" if nbytes >= 1e6 else f"{nbytes / 1e3:.0f} kB"


def _measured(device: torch.device, what: str, host_bytes: float, device_bytes: float,
              advice: str) -> dict[str, tuple[Need, ...]]:
    """Working memory a warm-up measured: host RAM (all of it on a CPU) and, on a GPU, device memory."""
    needs = {"host": (Need(what, int(host_bytes), advice),)} if host_bytes > 0 else {}
    if device.type == "cuda":
        needs["device"] = (Need(what, int(device_bytes), advice),)
    return needs


def _merge(*groups: dict[str, tuple[Need, ...]]) -> dict[str, tuple[Need, ...]]:
    out: dict[str, tuple[Need, ...]] = {}
    for group in groups:
        for kind, needs in group.items():
            out[kind] = out.get(kind, ()) + needs
    return out


# --- the steps ----------------------------------------------------------------------------------------------------

def image_bytes(frames: int, width: int, height: int) -> int:
    """Size of a ComfyUI IMAGE batch: float32 RGB."""
    return frames * width * height * 3 * 4


def features_bytes(kind: str, frames: int) -> int:
    """Size of the speech features of ``frames`` video frames (HuBERT: 25 states x 1024 wide, 50 Hz)."""
    rows = ROWS_PER_FRAME[kind] * frames
    return rows * (HUBERT_LAYERS * HUBERT_DIM if kind == "hubert" else MFCC_DIM) * 4


def features_step(encoder: Any, waveform: torch.Tensor, sample_rate: int) -> Step:
    """The speech encoder timed on two short pieces of the speech (cost per pass + per second) after a first call,
    over the passes the whole clip takes; memory: the features plus one pass's working set (linear in length)."""
    wave16k, _ = prepare_waveform(waveform, sample_rate)
    samples = wave16k.numel()
    device = torch.device(getattr(encoder, "device", "cpu"))
    kind = encoder.kind
    lengths = sorted({min(samples, int(s * RATE)) for s in SPEECH_PIECES_S})
    measure(lambda: encoder(wave16k[:lengths[0]]), device, memory=False)  # the first call pays one-off set-up
    runs = [(n / RATE, measure(lambda n=n: encoder(wave16k[:n]), device)) for n in lengths]
    (s1, m1), (s2, m2) = runs[0], runs[-1]
    slope = (m2.seconds - m1.seconds) / (s2 - s1) if s2 > s1 else 0.0
    if slope <= 0:  # one piece (a short clip) or a noisy machine: proportional to the length
        slope, fixed = m2.seconds / s2, 0.0
    else:
        fixed = max(m1.seconds - slope * s1, 0.0)
    spans = encoder.spans(samples) if hasattr(encoder, "spans") else None  # HuBERT's windows; MFCC: one pass
    passes = [(rb - ra) / HUBERT_HZ for _, _, ra, rb in spans] if spans else [samples / RATE]
    seconds = sum(fixed + slope * p for p in passes) if s2 < samples / RATE else m2.seconds

    def at(memory: Callable[[Measured], int], length_s: float) -> int:
        """Working memory of a pass of ``length_s`` seconds, linear through the two pieces."""
        if s2 <= s1:
            return int(memory(m2) * length_s / s2)
        return int(max(memory(m1) + (memory(m2) - memory(m1)) / (s2 - s1) * (length_s - s1), 0))

    frames = samples * FPS // RATE
    kept = features_bytes(kind, frames)
    longest = max(passes)
    # a pass holds its own features and the layers' outputs; at the end the features are copied once
    host_work = max(at(lambda m: m.host_bytes, longest) - features_bytes(kind, int(longest * FPS)), kept)
    label = "HuBERT" if kind == "hubert" else "MFCC"
    needs = {"host": (Need(f"{label} features of {frames} frames", kept, SHORTER),
                      Need(f"{label} working memory ({longest:.0f} s pass)", host_work, SHORTER))}
    if device.type == "cuda":
        needs["device"] = (Need(f"{label} on the GPU ({longest:.0f} s pass)", at(lambda m: m.device_bytes, longest),
                                SHORTER),)
    rate = f"{seconds / max(samples / RATE, 1e-9):.2f} s per second of speech"
    return Step((Part("features", seconds, rate),), keeps=(needs["host"][0],), **needs)


def sampling_step(generator: MotionGenerator, frames: int, steps: int, takes: int = 1,
                  speech: Optional[torch.Tensor] = None) -> Step:
    """One speech encoding and one denoiser call at the run's sequence length (the first window for long clips)
    and number of takes, scaled by steps x windows. ``speech``: the features as the generator takes them; zeros
    of that shape when not known yet (the cost does not depend on the values)."""
    calls = len(schedule(steps))  # a step count no schedule gives fails here, before any warm-up
    device = model_device(generator)
    spans = windows(frames)
    length = spans[0][1] - spans[0][0]
    rows = ROWS_PER_FRAME[generator.audio_kind] * length
    if speech is None:
        shape = (1, HUBERT_LAYERS, rows, HUBERT_DIM) if generator.audio_kind == "hubert" else (1, rows, MFCC_DIM)
        speech = torch.zeros(shape)
    cond = generator.condition(speech[..., :rows, :].to(device), torch.zeros(1, STYLE_DIM, device=device),
                               torch.zeros(1, MOTION_DIM, device=device))
    x = torch.zeros(takes, length, MOTION_DIM, device=device)
    t = torch.full((takes,), 500, dtype=torch.long, device=device)
    with torch.no_grad():
        encode = measure(lambda: generator.denoiser(cond), device)
        denoise = encode.value[0]
        first = measure(lambda: denoise(x, t), device)  # includes one-off set-up: its memory, not its time
        call = measure(lambda: denoise(x, t), device, memory=False)
    seconds = sum((encode.seconds + calls * call.seconds) * (b - a) / length for a, b in spans)
    what = f"sampler ({takes} take(s) x {length} frames)"
    advice = FEWER_TAKES if takes > 1 else SHORTER
    rate = f"{call.seconds:.2f} s/step" + (f" x {len(spans)} windows" if len(spans) > 1 else "")
    needs = _measured(device, what, max(encode.host_bytes, first.host_bytes),
                      max(encode.device_bytes, first.device_bytes), advice)
    return Step((Part("sampling", seconds, rate),), **needs)


class RenderWarmup:
    """The first batches of a render, timed. ``batches()`` goes on from them, so a run that continues the warm-up
    renders no frame twice."""

    def __init__(self, renderer: MotionAutoencoder, portrait: PortraitCode, latents: torch.Tensor,
                 batch_size: Optional[int] = None) -> None:
        self.device = model_device(renderer)
        total = latents.shape[0]
        self.batch = batch_plan(total, batch_size, self.device)
        self.precision = renderer.compute_dtype
        self._rest = iter_frames(renderer, portrait, latents, batch_size)
        first = measure(lambda: next(self._rest), self.device)
        self.done = [first.value]
        self.host_bytes, self.device_bytes = first.host_bytes, first.device_bytes
        frames, timed = first.value[1].shape[0], []
        while frames < total and (frames < WARMUP_FRAMES or len(self.done) < 2):
            batch = measure(lambda: next(self._rest), self.device, memory=self.device.type == "cuda")
            self.done.append(batch.value)
            timed.append((batch.seconds, batch.value[1].shape[0]))
            frames += batch.value[1].shape[0]
        seconds, count = map(sum, zip(*timed)) if timed else (first.seconds, first.value[1].shape[0])
        self.seconds_per_frame = seconds / count
        # the first batch's one-off cost, paid once per process
        self.setup_s = max(first.seconds - self.seconds_per_frame * first.value[1].shape[0], 0.0)

    @property
    def last(self) -> torch.Tensor:
        """The last batch rendered, (n,3,256,256) in 0..1 on the renderer's device."""
        return self.done[-1][1]

    def batches(self) -> Iterator[tuple[int, torch.Tensor]]:
        done, self.done = self.done, []
        return chain(done, self._rest)


def _render_needs(warm: RenderWarmup, batch: int) -> dict[str, tuple[Need, ...]]:
    advice = SMALLER_BATCH
    if warm.device.type == "cuda" and warm.precision == torch.float32:
        advice += f", or {LOWER_PRECISION}"
    scale = batch / warm.batch
    return _measured(warm.device, f"rendering {batch} frames at once", warm.host_bytes * scale,
                     warm.device_bytes * scale, advice)


def frames_run(renderer: MotionAutoencoder, portrait: PortraitCode, latents: torch.Tensor,
               batch_size: Optional[int] = None) -> tuple["RunEstimate", RenderWarmup]:
    """Render Frames: the whole take as one IMAGE batch (256x256 float32 per frame, so it grows with the length).
    Returns the warm-up too: render the rest with ``render_frames(..., batches=warmup.batches())``."""
    warm = RenderWarmup(renderer, portrait, latents, batch_size)
    frames, side = latents.shape[0], renderer.size
    host = (Need(f"IMAGE output of {frames} frames at {side}x{side}", image_bytes(frames, side, side), STREAM),)
    if warm.device.type == "cuda":  # two pinned staging buffers
        host += (Need("staging buffers", image_bytes(2 * warm.batch, side, side), SMALLER_BATCH),)
    needs = _merge({"host": host}, _render_needs(warm, warm.batch))
    seconds = warm.setup_s + warm.seconds_per_frame * frames  # this run paid the set-up in its first batch
    step = Step((Part("rendering", seconds, f"{warm.seconds_per_frame:.2f} s/frame"),), **needs)
    return run_estimate([step], warm.device), warm


def _encoding_per_frame(pieces: Sequence[Any], writers: Sequence[str], fps: float) -> float:
    """Seconds per frame to encode these uint8 pieces with each writer, in memory (no file is written): all the
    frames, less one frame's run (the encoder's set-up and the key frame, paid once per clip)."""
    from PIL import Image

    from ..video.writers import FrameSequenceWriter, Mp4Writer

    frames = [frame for piece in pieces for frame in piece]

    def encode(images) -> float:
        start = time.perf_counter()
        for kind in writers:
            if kind == "mp4":
                writer = Mp4Writer(io.BytesIO(), fps=round(fps))
                writer.write(images)
                writer.close()
            else:
                for image in images:
                    Image.fromarray(image).save(io.BytesIO(), format="PNG",
                                                compress_level=FrameSequenceWriter.PNG_COMPRESSION)
        return time.perf_counter() - start

    everything = encode(np.stack(frames))
    if len(frames) < 2:
        return everything
    per_frame = (everything - encode(frames[0][None])) / (len(frames) - 1)
    return per_frame if per_frame > 0 else everything / len(frames)


def video_step(clip: VideoRender, writers: Sequence[str] = ("mp4",)) -> Step:
    """A clip rendered into files: its first batches through the renderer, upscale, paste back and the encoders at
    the output size; memory: one batch at the output size, whatever the length. ``writers``: "mp4" and/or "png"
    (an image sequence)."""
    device = model_device(clip.renderer)
    frames = clip.num_frames
    batch = batch_plan(frames, clip.batch_size, device)
    warm_batch = batch if device.type == "cuda" else min(batch, default_batch_size(device))
    batches = max(2, -(-WARMUP_FRAMES // warm_batch))
    warm = RenderWarmup(clip.renderer, clip.portrait, clip.latents[: batches * warm_batch], warm_batch)
    prepared = measure(lambda: clip.finisher(device), device)  # the paste's mask and picture: once per clip
    finish = prepared.value
    outputs = [measure(lambda b=b: list(finish(b)), device) for _, b in warm.done]
    timed = outputs[1:] or outputs  # the first pays one-off set-up
    render_s = warm.seconds_per_frame * frames
    output_s = sum(m.seconds for m in timed) / sum(len(f) for m in timed for f in m.value) * frames
    encode_s = _encoding_per_frame([p for m in outputs for p in m.value], writers, clip.fps) * frames
    parts = [Part("rendering", render_s, f"{warm.seconds_per_frame:.2f} s/frame")]
    output = " and ".join(name for name, on in (("upscale", clip.upscaler is not None),
                                                ("paste back", clip.original is not None)) if on)
    if output:
        parts.append(Part(output, output_s))
    parts.append(Part("encoding", encode_s))
    # the writer threads encode while the next batch renders: on a GPU the two overlap, on a CPU they share cores
    wall = max(render_s + output_s, encode_s) if device.type == "cuda" else None

    width, height = clip.size
    piece = min(batch, clip.piece_frames)
    host = [Need(f"frames on their way to the file ({width}x{height})", WRITER_PIECES * piece * width * height * 3,
                 SMALLER_BATCH)]
    if "mp4" in writers:
        host.append(Need(f"H.264 encoder at {width}x{height}", MP4_ENCODER_FRAMES * width * height * 3 // 2,
                         "write an image sequence instead of an mp4 (headless: --frames-dir without --out)"))
    scale = batch / warm.batch
    worst = max(outputs, key=lambda m: m.host_bytes + m.device_bytes)
    output_work = _measured(device, f"{output or 'output'} of {batch} frames",
                            prepared.host_bytes + worst.host_bytes * scale,
                            prepared.device_bytes + worst.device_bytes * scale, SMALLER_BATCH)
    needs = _merge({"host": tuple(host)}, _render_needs(warm, batch), output_work)
    return Step(tuple(parts), seconds=wall, **needs)


def video_run(clip: VideoRender, writers: Sequence[str] = ("mp4",)) -> "RunEstimate":
    """Render Video: time and (bounded) memory of rendering the clip into the writers."""
    return run_estimate([video_step(clip, writers)], model_device(clip.renderer))


def paste_back_run(original: torch.Tensor, frames: torch.Tensor, box: CropBox, feather: float = 0.1,
                   mask: str = "head", color_match: bool = True) -> "RunEstimate":
    """Paste Back: an IMAGE batch at the picture's full size (it grows with length x size), timed on two frames
    after a first one (which fixes the colour match)."""
    check_image_frames(frames)
    count = frames.shape[0]
    cpu = torch.device("cpu")
    prepared = measure(lambda: Compositor(original, box, feather=feather, mask=mask, color_match=color_match), cpu)
    first = measure(lambda: prepared.value.paste(frames[:1].permute(0, 3, 1, 2)), cpu, memory=False)
    probe = frames[1:3].permute(0, 3, 1, 2)
    timed = measure(lambda: prepared.value.paste(probe), cpu) if probe.shape[0] else first
    # Each pasted chunk is then copied into the whole batch's output, memory touched for the first time.
    stored = measure(lambda: torch.empty_like(timed.value).copy_(timed.value), cpu, memory=False)
    height, width = first.value.shape[1:3]
    per_frame = (timed.seconds + stored.seconds) / timed.value.shape[0]
    work = timed.host_bytes / timed.value.shape[0] if probe.shape[0] else image_bytes(2, width, height)
    chunk = min(PASTE_CHUNK, count)
    host = (Need(f"IMAGE output of {count} frames at {width}x{height}", image_bytes(count, width, height), STREAM),
            Need(f"pasting {chunk} frames at once", int(prepared.host_bytes + work * chunk), STREAM))
    step = Step((Part("paste back", prepared.seconds + per_frame * count, f"{per_frame:.2f} s/frame"),), host=host)
    return run_estimate([step], cpu)


def sampling_run(generator: MotionGenerator, audio: AudioFeatures, steps: int, takes: int = 1) -> "RunEstimate":
    """The Diffusion Sampler: ``takes`` motions for these speech features."""
    check_sampling(generator, audio, takes)
    step = sampling_step(generator, audio.num_frames, steps, takes, speech=audio.values.unsqueeze(0))
    return run_estimate([step], model_device(generator))


def animation_run(encoder: Any, waveform: torch.Tensor, sample_rate: int, generator: MotionGenerator, steps: int,
                  clip: VideoRender, writers: Sequence[str] = ("mp4",)) -> "RunEstimate":
    """The headless command: features, sampling and the video, before any of them runs. ``clip`` describes the
    video with stand-in latents of the clip's length (``stand_in_latents``), since the motion is not sampled yet."""
    stages = [features_step(encoder, waveform, sample_rate), sampling_step(generator, clip.num_frames, steps),
              video_step(clip, writers)]
    return run_estimate(stages, model_device(clip.renderer))


def stand_in_latents(portrait: PortraitCode, frames: int, seed: int = 0) -> torch.Tensor:
    """Latents of ``frames`` frames that move about the portrait's own pose, to time a render before the motion
    exists (an encoder given identical frames would finish faster than on real motion)."""
    noise = torch.randn(frames, MOTION_DIM, generator=torch.Generator().manual_seed(seed))
    return portrait.alpha0.detach().float().cpu() + 0.05 * noise


def clip_frames(samples: int, sample_rate: int) -> int:
    """Video frames a recording of ``samples`` at ``sample_rate`` gives (to within a frame)."""
    return max(1, int(samples * FPS // sample_rate))


def run_estimate(steps: Sequence[Step], device: torch.device) -> RunEstimate:
    """The steps' estimate against what the process holds and the machine has available now, after the warm-ups:
    memory the warm-ups freed mostly stays with the process, ready for the run to reuse, and model weights read
    from mapped files become resident only once the warm-ups touch them."""
    device = torch.device(device)
    return RunEstimate(steps=tuple(steps), device=str(device), host_in_use=resident_memory(),
                       host_available=host_available(), device_in_use=device_in_use(device),
                       device_available=device_available(device))
