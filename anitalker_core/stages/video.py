"""A clip rendered into files as a stage: its first batches through the renderer, face restore, upscale, paste
back and the encoders, timed; then the rest, streamed. Memory is one batch at the output size whatever the length."""

from __future__ import annotations

import io
from dataclasses import replace
from itertools import chain
from typing import Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import torch

from ..device_policy import default_batch_size
from ..image.pixels import convert_samples
from ..types import MOTION_DIM, PortraitCode, PreviewCallback, ProgressCallback
from ..video.renderer import batch_plan
from ..video.frame_sequence import FrameSequenceWriter, SequenceOptions
from ..video.video_render import Finisher, VideoRender
from ..video.writers import BackgroundWriter, Mp4Writer, ProResWriter, VideoWriter, audio_for_mux
from .estimate import SMALLER_BATCH, Need, Part, Step, measured_needs, merge_needs
from .frames import WARMUP_FRAMES, time_batches
from . import measure as measure_mod
from .measure import measure

MP4_ENCODER_FRAMES = 120
"""Frames (yuv420) that libx264 (preset medium) holds for look-ahead, references and its threads; measured at
256x256 to 1920x1080 on 2 cores (bench/estimate.py)."""
WRITER_PIECES = 4
"""Output pieces alive at once on the video path: two queued for the writer thread, one being encoded, one made."""
CONVERSION_COPIES = 2
"""Float RGBA copies of one frame a file writer may hold while it converts it (e.g. to half floats for EXR)."""
VIDEO_FILES = ("mp4", "mov")
"""Kinds of output by name: an H.264 mp4, a ProRes 4444 mov (with alpha when the frames carry the matte); an
image sequence is its ``SequenceOptions`` ("png" alone: the default sequence)."""

OutputKind = Union[str, SequenceOptions]


def in_memory_writer(kind: OutputKind, fps: float, alpha: bool = False) -> VideoWriter:
    """A writer of this kind that encodes into memory and writes no file: what the estimate times."""
    if kind == "mp4":
        return Mp4Writer(io.BytesIO(), fps=fps)
    if kind == "mov":
        return ProResWriter(io.BytesIO(), fps=fps, alpha=alpha)
    if kind == "png":
        kind = SequenceOptions()
    if not isinstance(kind, SequenceOptions):
        raise ValueError(f"unknown kind of output {kind!r}: {', '.join(VIDEO_FILES)} or SequenceOptions")
    return FrameSequenceWriter(None, fps=fps, options=kind)


def stand_in_latents(portrait: PortraitCode, frames: int, seed: int = 0) -> torch.Tensor:
    """Latents of ``frames`` frames that move about the portrait's own pose, to time a render before the motion
    exists (an encoder given identical frames would finish faster than on real motion)."""
    noise = torch.randn(frames, MOTION_DIM, generator=torch.Generator().manual_seed(seed))
    return portrait.alpha0.detach().float().cpu() + 0.05 * noise


def _encoding_per_frame(pieces: Sequence[np.ndarray], kinds: Sequence[OutputKind], fps: float) -> float:
    """Seconds per frame to encode these pieces with each kind of writer, in memory (no file is written): all the
    frames, less one frame's run (the encoder's set-up and the key frame, paid once per clip)."""
    frames = [frame for piece in pieces for frame in piece]
    alpha = bool(frames) and frames[0].shape[-1] == 4

    def encode(images: np.ndarray) -> float:
        start = measure_mod.clock()
        for kind in kinds:
            writer = in_memory_writer(kind, fps, alpha)
            writer.write(images)
            writer.close()
        return measure_mod.clock() - start

    everything = encode(np.stack(frames))
    if len(frames) < 2:
        return everything
    per_frame = (everything - encode(frames[0][None])) / (len(frames) - 1)
    return per_frame if per_frame > 0 else everything / len(frames)


class VideoWrite:
    """Renders ``clip`` into writers (``Mp4Writer``, ``ProResWriter``, ``FrameSequenceWriter``) batch by batch,
    with its audio.

    ``writers`` names the kinds the run will write ("mp4", "mov", a sequence's ``SequenceOptions``), for the
    estimate of their encoding; the clip's ``pixels`` must suit them (16-bit for ProRes, the matte for alpha).
    ``estimate()`` renders and finishes the clip's first batches (kept: the run writes them and goes on)."""

    def __init__(self, clip: VideoRender, writers: Sequence[OutputKind] = ("mp4",)) -> None:
        self.clip = clip
        self.kinds = tuple(writers)
        self.device = clip.device
        self._finish: Optional[Finisher] = None
        self._done: list[tuple[int, list[np.ndarray]]] = []  # (frames done after it, pieces), from the warm-up

    def _finisher(self) -> Finisher:
        if self._finish is None:
            self._finish = self.clip.finisher()  # the paste's mask and picture: once per clip
        return self._finish

    def estimate(self) -> Step:
        clip, device = self.clip, self.device
        frames = clip.num_frames
        batch = batch_plan(frames, clip.batch_size, device)
        # on a CPU a few small batches time the renderer as well as big ones do, in less time
        warm_batch = batch if device.type == "cuda" else min(batch, default_batch_size(device))
        count = min(frames, max(2, -(-WARMUP_FRAMES // warm_batch)) * warm_batch)
        timing = time_batches(iter(replace(clip, batch_size=warm_batch).batches(clip.latents[:count])), count, device)
        prepared = measure(self._finisher, device)
        outputs = [measure(lambda s=s, b=b: list(self._finish(s, b)), device) for s, b in timing.done]
        self._done = [(s + b.shape[0], m.value) for (s, b), m in zip(timing.done, outputs)]
        timed = outputs[1:] or outputs  # the first pays one-off set-up (the colour match's reference frame)
        per_frame = sum(m.seconds for m in timed) / sum(len(f) for m in timed for f in m.value)
        first_frames = sum(len(f) for f in outputs[0].value)
        once = prepared.seconds + (max(outputs[0].seconds - per_frame * first_frames, 0.0) if outputs[1:] else 0.0)
        render_s = timing.setup_s + timing.seconds_per_frame * frames  # the run goes on from the warm-up's set-up
        output_s = once + per_frame * frames
        encode_s = _encoding_per_frame([p for m in outputs for p in m.value], self.kinds, clip.fps) * frames
        parts = [Part("rendering", render_s, f"{timing.seconds_per_frame:.2f} s/frame")]
        others = len(clip.beneath)
        output = " and ".join(name for name, on in ((f"{others} other face{'s' if others > 1 else ''}", others > 0),
                                                    ("face restore", clip.restorer is not None),
                                                    ("upscale", clip.upscaler is not None),
                                                    ("paste back", clip.original is not None)) if on)
        if output:
            parts.append(Part(output, output_s))
        parts.append(Part("encoding", encode_s))
        # the writer threads encode while the next batch renders: on a GPU the two overlap, on a CPU they share
        wall = max(render_s + output_s, encode_s) if device.type == "cuda" else None

        width, height = clip.size
        piece = min(batch, clip.piece_frames)
        host = [Need(f"frames on their way to the file ({width}x{height})",
                     WRITER_PIECES * piece * clip.piece_bytes, SMALLER_BATCH)]
        if "mp4" in self.kinds:
            host.append(Need(f"H.264 encoder at {width}x{height}", MP4_ENCODER_FRAMES * width * height * 3 // 2,
                             "write an image sequence instead of an mp4 (headless: --frames-dir without --out)"))
        files = [k for k in self.kinds if k != "mp4"]
        if files:
            host.append(Need(f"{len(files)} file writer(s) converting a frame", len(files) * CONVERSION_COPIES
                             * width * height * 4 * 4, SMALLER_BATCH))
        scale = batch / timing.batch
        worst = max(outputs, key=lambda m: m.host_bytes + m.device_bytes)
        output_work = measured_needs(device, f"{output or 'output'} of {batch} frames",
                                     prepared.host_bytes + worst.host_bytes * scale,
                                     prepared.device_bytes + worst.device_bytes * scale, SMALLER_BATCH)
        needs = merge_needs({"host": tuple(host)},
                            timing.needs(batch, device, clip.renderer.compute_dtype), output_work)
        return Step(tuple(parts), seconds=wall, **needs)

    def pieces(self, callback: Optional[ProgressCallback] = None,
               preview: Optional[PreviewCallback] = None) -> Iterator[np.ndarray]:
        """The clip as pieces of samples (n,H,W,C), rendered as they are asked for (the warm-up's first)."""
        total = self.clip.num_frames
        done, self._done = self._done, []
        start = done[-1][0] if done else 0
        finish = self._finisher()

        def rest() -> Iterator[tuple[int, Iterator[np.ndarray]]]:
            if start < total:
                for offset, batch in self.clip.batches(self.clip.latents[start:]):
                    yield start + offset + batch.shape[0], finish(start + offset, batch)

        for stop, outputs in chain(done, rest()):
            last = None
            for last in outputs:
                yield last
            if preview is not None and last is not None:
                preview(torch.from_numpy(convert_samples(last[-1][..., :3], "float32")))
            if callback is not None:
                callback(stop, total)

    def run(self, writers: Sequence[VideoWriter], audio: Optional[tuple[torch.Tensor, int]] = None,
            callback: Optional[ProgressCallback] = None, preview: Optional[PreviewCallback] = None) -> int:
        """Render into every writer, encoding on background threads while the next batch renders; mux ``audio``
        (waveform [C,T] or [B,C,T], rate). Closes the writers on success and aborts them (no partial file under
        the final name) on failure or cancel."""
        write_pieces(self.pieces(callback=callback, preview=preview), writers, audio)
        return self.clip.num_frames


def frames_batch(stage: VideoWrite, callback: Optional[ProgressCallback] = None,
                 preview: Optional[PreviewCallback] = None) -> torch.Tensor:
    """Every frame of the stage's clip as one IMAGE batch (T,H,W,3) float32 0..1 on the CPU: what a consumer that
    asks for all frames at once gets, in memory that grows with the length."""
    clip = stage.clip
    width, height = clip.size
    images = torch.empty((clip.num_frames, height, width, 3), dtype=torch.float32)
    done = 0
    for piece in stage.pieces(callback=callback, preview=preview):
        images[done: done + len(piece)] = torch.from_numpy(convert_samples(piece[..., :3], "float32"))
        done += len(piece)
    return images


def write_pieces(pieces: Iterable[np.ndarray], writers: Sequence[VideoWriter],
                 audio: Optional[tuple[torch.Tensor, int]] = None) -> None:
    """Frames, a piece at a time, into every writer on background threads, then ``audio`` (waveform [C,T] or
    [B,C,T], rate); the writers are closed on success and aborted (no partial file under the final name) on
    failure or cancel."""
    mux = audio_for_mux(*audio) if audio is not None else None
    threads: list[BackgroundWriter] = []
    try:
        for w in writers:
            if mux is not None:
                w.add_audio_stream(mux[1], int(mux[0].shape[0]))
            threads.append(BackgroundWriter(w))
        for frames in pieces:
            for t in threads:
                t.write(frames)
        for t in threads:
            t.finish()
        for w in writers:
            if mux is not None:
                w.write_audio(*mux)
            w.close()
    except BaseException:
        for t in threads:
            try:
                t.finish()
            except BaseException:  # the first error is the one to report
                pass
        for w in writers:
            w.abort()
        raise


def image_pieces(images: torch.Tensor, piece_frames: int = 8, callback: Optional[ProgressCallback] = None,
                 preview: Optional[PreviewCallback] = None) -> Iterator[np.ndarray]:
    """An IMAGE batch already in memory (T,H,W,3) float 0..1, handed on as float32 pieces with progress and a
    preview: how a VIDEO that is not a pack's clip reaches the writers."""
    total = int(images.shape[0])
    for start in range(0, total, piece_frames):
        piece = images[start: start + piece_frames].detach().float().cpu()
        yield piece.clamp(0, 1).numpy()
        if preview is not None:
            preview(piece[-1])
        if callback is not None:
            callback(min(start + piece_frames, total), total)
