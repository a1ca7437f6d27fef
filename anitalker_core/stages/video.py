"""A clip rendered into files as a stage: its first batches through the renderer, face restore, upscale, paste
back and the encoders, timed; then the rest, streamed. Memory is one batch at the output size whatever the length."""

from __future__ import annotations

import io
import time
from dataclasses import replace
from itertools import chain
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from ..device_policy import default_batch_size
from ..types import MOTION_DIM, PortraitCode, PreviewCallback, ProgressCallback
from ..video.renderer import batch_plan
from ..video.video_render import Finisher, VideoRender
from ..video.writers import BackgroundWriter, FrameSequenceWriter, Mp4Writer, VideoWriter, audio_for_mux
from .estimate import SMALLER_BATCH, Need, Part, Step, measured_needs, merge_needs
from .frames import WARMUP_FRAMES, time_batches
from .measure import measure

MP4_ENCODER_FRAMES = 120
"""Frames (yuv420) that libx264 (preset medium) holds for look-ahead, references and its threads; measured at
256x256 to 1920x1080 on 2 cores (bench/estimate.py)."""
WRITER_PIECES = 4
"""Output pieces alive at once on the video path: two queued for the writer thread, one being encoded, one made."""
WRITER_KINDS = ("mp4", "png")


def stand_in_latents(portrait: PortraitCode, frames: int, seed: int = 0) -> torch.Tensor:
    """Latents of ``frames`` frames that move about the portrait's own pose, to time a render before the motion
    exists (an encoder given identical frames would finish faster than on real motion)."""
    noise = torch.randn(frames, MOTION_DIM, generator=torch.Generator().manual_seed(seed))
    return portrait.alpha0.detach().float().cpu() + 0.05 * noise


def _encoding_per_frame(pieces: Sequence[np.ndarray], writers: Sequence[str], fps: float) -> float:
    """Seconds per frame to encode these uint8 pieces with each writer, in memory (no file is written): all the
    frames, less one frame's run (the encoder's set-up and the key frame, paid once per clip)."""
    from PIL import Image

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


class VideoWrite:
    """Renders ``clip`` into writers (``Mp4Writer``, ``FrameSequenceWriter``) batch by batch, with its audio.

    ``writers`` names the kinds the run will write ("mp4" and/or "png"), for the estimate of their encoding.
    ``estimate()`` renders and finishes the clip's first batches (kept: the run writes them and goes on)."""

    def __init__(self, clip: VideoRender, writers: Sequence[str] = ("mp4",)) -> None:
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
        timed = outputs[1:] or outputs  # the first pays one-off set-up
        render_s = timing.seconds_per_frame * frames
        output_s = sum(m.seconds for m in timed) / sum(len(f) for m in timed for f in m.value) * frames
        encode_s = _encoding_per_frame([p for m in outputs for p in m.value], self.kinds, clip.fps) * frames
        parts = [Part("rendering", render_s, f"{timing.seconds_per_frame:.2f} s/frame")]
        output = " and ".join(name for name, on in (("face restore", clip.restorer is not None),
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
                     WRITER_PIECES * piece * width * height * 3, SMALLER_BATCH)]
        if "mp4" in self.kinds:
            host.append(Need(f"H.264 encoder at {width}x{height}", MP4_ENCODER_FRAMES * width * height * 3 // 2,
                             "write an image sequence instead of an mp4 (headless: --frames-dir without --out)"))
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
        """The clip as uint8 pieces (n,H,W,3), rendered as they are asked for (the warm-up's first)."""
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
                preview(torch.from_numpy(last[-1]).float().div_(255))
            if callback is not None:
                callback(stop, total)

    def run(self, writers: Sequence[VideoWriter], audio: Optional[tuple[torch.Tensor, int]] = None,
            callback: Optional[ProgressCallback] = None, preview: Optional[PreviewCallback] = None) -> int:
        """Render into every writer, encoding on background threads while the next batch renders; mux ``audio``
        (waveform [C,T] or [B,C,T], rate). Closes the writers on success and aborts them (no partial file under
        the final name) on failure or cancel."""
        mux = audio_for_mux(*audio) if audio is not None else None
        threads: list[BackgroundWriter] = []
        try:
            for w in writers:
                if mux is not None:
                    w.add_audio_stream(mux[1], int(mux[0].shape[0]))
                threads.append(BackgroundWriter(w))
            for frames in self.pieces(callback=callback, preview=preview):
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
        return self.clip.num_frames
