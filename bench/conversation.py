"""Peak memory of a conversation (two faces of one picture, rendered together batch by batch into an mp4) for a
short clip and one three times longer: memory is one batch per face, so it must not grow with the length.

    python -m bench.conversation --frames 25 75 --width 1024     # JSON in bench/results/

Each length runs in its own process, so its peak resident memory (VmHWM) is its own. The renderer has random
weights of the real size (nothing to download); the picture is two sample portraits side by side, WIDTH x WIDTH/2;
each face gets its own random motion, the second one a third shorter (held at rest to the end).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from bench import record


def one_run(frames: int, width: int, batch: int) -> dict:
    from PIL import Image

    from anitalker_core.image.portrait_crop import crop_portrait
    from anitalker_core.models.motion_autoencoder import MotionAutoencoder
    from anitalker_core.stages import VideoWrite
    from anitalker_core.video.conversation import onto
    from anitalker_core.video.renderer import encode_portrait
    from anitalker_core.video.video_render import VideoRender
    from anitalker_core.video.writers import Mp4Writer
    from tests.support.golden import MEDIA

    torch.manual_seed(0)
    renderer = MotionAutoencoder().eval()
    halves = [np.asarray(Image.open(MEDIA / n).convert("RGB").resize((width // 2, width // 2)))
              for n in ("monalisa.jpg", "statue.jpg")]
    picture = torch.from_numpy(np.concatenate(halves, axis=1).copy()).float().div(255)
    clips = []
    with torch.inference_mode():
        for face, length in ((1, frames), (2, frames * 2 // 3)):
            crop, box, _ = crop_portrait(picture, face=face)
            portrait = encode_portrait(renderer, crop, crop=box)
            latents = portrait.alpha0.cpu() + 0.3 * torch.randn(length, 20)
            clips.append(VideoRender(renderer, portrait, latents, batch_size=batch))
        talk = onto(replace(clips[0], original=picture), clips[1]).check()
        start = time.perf_counter()
        VideoWrite(talk).run([Mp4Writer(io.BytesIO())])
    return {"frames": talk.num_frames, "size": list(talk.size), "batch": batch,
            "wall_s": round(time.perf_counter() - start, 1), "peak_rss_mb": round(record.peak_rss_mb())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[25, 75])
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child process: one length
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.frames[0], args.width, args.batch)))
        return
    runs = []
    for frames in args.frames:
        out = subprocess.run([sys.executable, "-m", "bench.conversation", "--one", "--frames", str(frames),
                              "--width", str(args.width), "--batch", str(args.batch)],
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(runs[-1], file=sys.stderr)
    peaks = [r["peak_rss_mb"] for r in runs]
    record.save("conversation", {"runs": runs, "longest_vs_shortest": round(max(peaks) / min(peaks) - 1, 3)})


if __name__ == "__main__":
    main()
