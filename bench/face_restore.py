"""What face restoration costs on this machine: a GFPGAN v1.4 of the real size (random weights, spandrel's class)
loaded through the pack's loader, on its own and inside the streaming video path.

    python -m bench.face_restore [--device cpu] [--frames 2]      # JSON in bench/results/face_restore-*.json

Figures: seconds per 512x512 face at the restorer's batch (after one untimed batch that pays the set-up), the
tensor memory of one restore batch (counted the way the estimate counts it), and the peak tensor memory of
streaming FRAMES and 3 x FRAMES frames (renderer with random weights, GFPGAN, pasted back into a 1024x1024 picture):
memory that stays one batch whatever the length. Weights do not change speed or memory.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench import record


def main() -> None:
    from PIL import Image
    from tests.support.golden import MEDIA
    from tests.support.image_models import write_gfpgan

    from anitalker_core.image.face_restore import RESTORE_BATCH
    from anitalker_core.image.upscale import load_upscale_model
    from anitalker_core.models.motion_autoencoder import MotionAutoencoder
    from anitalker_core.pipeline import portrait_from_image
    from anitalker_core.stages import VideoWrite
    from anitalker_core.stages.measure import measure
    from anitalker_core.video.video_render import VideoRender

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--frames", type=int, default=2, help="frames of the short clip (the long one has three times)")
    args = ap.parse_args()
    device = torch.device(args.device)
    load_before = os.getloadavg()[0]  # other work on the machine slows every figure down: kept beside them

    with tempfile.TemporaryDirectory() as tmp:
        restorer = load_upscale_model(write_gfpgan(Path(tmp) / "GFPGANv1.4.pth"), device=device)
    faces = torch.rand(RESTORE_BATCH, 3, 256, 256, device=device)
    with torch.inference_mode():
        restorer(faces)  # set-up: allocator, kernel choice
        timed = measure(lambda: restorer(faces), device)
    per_face = timed.seconds / RESTORE_BATCH

    torch.manual_seed(0)
    renderer = MotionAutoencoder().eval().to(device)
    picture = Image.open(MEDIA / "monalisa.jpg").convert("RGB").resize((1024, 1024), Image.BICUBIC)
    picture = torch.from_numpy(np.asarray(picture).copy()).float().div(255)
    portrait = portrait_from_image(renderer, picture)
    latents = portrait.alpha0.cpu() + 0.3 * torch.randn(3 * args.frames, 20)
    streamed = {}
    for frames in (args.frames, 3 * args.frames):
        clip = VideoRender(renderer, portrait, latents[:frames], original=picture, restorer=restorer).check()
        start = time.perf_counter()
        with torch.inference_mode():
            peak = measure(lambda: sum(len(p) for p in VideoWrite(clip).pieces()), device)
        streamed[frames] = {"seconds": round(time.perf_counter() - start, 2),
                            "peak_tensor_mb": round((peak.host_bytes + peak.device_bytes) / 1e6, 1)}

    figures = {
        "model": "GFPGANv1.4 size (86 M parameters, random weights), fp32",
        "restore_batch": RESTORE_BATCH,
        "seconds_per_face": round(per_face, 3),
        "restore_batch_tensor_mb": round((timed.host_bytes + timed.device_bytes) / 1e6, 1),
        "streamed_into_1024x1024": streamed,
        "long_vs_short_peak": round(streamed[3 * args.frames]["peak_tensor_mb"]
                                    / streamed[args.frames]["peak_tensor_mb"], 3),
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "torch_threads": torch.get_num_threads(),
    }
    print(figures)
    record.save("face_restore", figures, device=str(device))


if __name__ == "__main__":
    main()
