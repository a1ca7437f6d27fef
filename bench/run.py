"""Speed and memory of the project's inference against a naive per-frame loop, measured side by side.

    python -m bench.run --device cpu --seconds 10            # whole pipeline + renderer + sampler
    python -m bench.run --device cuda --frames 2000          # GPU renderer throughput and fp16/bf16 error

The naive loop is written the way the reference inference works: the portrait encoded four times, batch-1
rendering with the motion-direction QR recomputed for every frame, speech encoding and variance adapter
re-run at every denoising step, a PNG written per frame and the PNGs re-encoded into a video afterwards.
Weights follow the parity fixtures' rule when ANITALKER_GOLDEN is available (else seeded random weights), so
the numbers need no downloads. Timings are wall-clock seconds on the given device.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]

from bench import record

from anitalker_core.device_policy import PRECISIONS, keep_freed_memory
from anitalker_core.diffusion.ddim import schedule
from anitalker_core.models.motion_autoencoder import MotionAutoencoder
from anitalker_core.models.motion_generator import MotionGenerator
from anitalker_core.video.renderer import encode_portrait, render_frames

VARIANT = "mfcc_full_control"


def build(device: torch.device):
    """The fixtures' weights when ANITALKER_GOLDEN is there, else seeded random weights."""
    from tests.support import golden

    if (golden.GOLDEN / "fixture.json").exists():
        renderer, generator = golden.renderer(), golden.generator(VARIANT)
    else:
        torch.manual_seed(0)
        renderer, generator = MotionAutoencoder().eval(), MotionGenerator(VARIANT).eval()
    return renderer.to(device), generator.to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return record.peak_rss_mb()


def timed(fn, device):
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t


# ----------------------------------------------------------------------------------------------- naive
def naive_encode(renderer, image):
    for _ in range(4):  # source, target, face and augmented copies are all the same image in the demo
        out = renderer.encode(image)
    return out


def naive_render(renderer, wa, feats, latents, folder: Path):
    from PIL import Image

    dec = renderer.dec
    for i in range(latents.shape[0]):
        with torch.no_grad():
            dec.direction.refresh()  # the render recomputes the QR for this frame, as the reference does
            img = renderer.render(wa, latents[i:i + 1], feats).clamp(-1, 1)
            frame = ((img[0] + 1) / 2 * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        Image.fromarray(frame).save(folder / f"{i:06d}.png")


def naive_sample(generator, wa, alpha0, speech, noise, steps):
    sched, x = schedule(steps), noise.float()
    cond = generator.condition(speech, wa, alpha0)  # pose, location and scale predicted from speech, as ours
    for idx in reversed(range(len(sched))):
        enc = generator.encode(cond)  # the reference re-encodes speech every step
        t = torch.full((x.shape[0],), sched.timesteps[idx], dtype=torch.long, device=x.device)
        x = sched.step(generator.denoise(enc, x, t).float(), idx, x)
    return x


def pngs_to_mp4(folder: Path, out: Path):
    from PIL import Image

    from anitalker_core.video.writers import Mp4Writer

    with Mp4Writer(out, fps=25) as w:
        for p in sorted(folder.glob("*.png")):
            w.write(torch.from_numpy(np.asarray(Image.open(p)).copy()).float().div(255)[None])


# ----------------------------------------------------------------------------------------------- ours
def ours_render_to_mp4(renderer, portrait, latents, out: Path, batch):
    from anitalker_core.video.writers import Mp4Writer

    with Mp4Writer(out, fps=25) as w:
        for s in range(0, latents.shape[0], 250):
            w.write(render_frames(renderer, portrait, latents[s:s + 250], batch_size=batch))


def compare_pipeline(renderer, generator, image, speech, noise, latents, frames, steps, batch, seconds,
                     device) -> dict:
    """Portrait + speech features in, mp4 out, both ways, on the same inputs."""
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "png").mkdir()

        def naive_pipeline():
            wa, alpha0, feats = naive_encode(renderer, image)
            naive_sample(generator, wa, alpha0, speech, noise, steps)
            naive_render(renderer, wa, feats, latents[:frames], d / "png")
            pngs_to_mp4(d / "png", d / "naive.mp4")

        def our_pipeline():
            p = encode_portrait(renderer, image)
            generator.sample(generator.condition(speech, p.wa, p.alpha0), noise, steps=steps)
            ours_render_to_mp4(renderer, p, latents[:frames], d / "ours.mp4", batch)

        _, t_naive = timed(naive_pipeline, device)
        _, t_ours = timed(our_pipeline, device)
    return {"seconds_of_audio": seconds, "frames": frames, "naive_s": t_naive, "ours_s": t_ours,
            "naive_s_per_frame": t_naive / frames, "ours_s_per_frame": t_ours / frames, "speedup": t_naive / t_ours}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length for the pipeline comparison")
    ap.add_argument("--frames", type=int, default=0, help="renderer-only comparison on this many frames")
    ap.add_argument("--naive-frames", type=int, default=0, help="frames the naive loop renders (0 = all); the "
                                                                "per-frame time is extrapolated when fewer")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=0, help="render batch (0 = the project's default)")
    ap.add_argument("--precision", default="fp32", choices=list(PRECISIONS))
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_grad_enabled(False)
    kept = keep_freed_memory()  # the command's allocator policy (ANITALKER_KEEP_FREED_MEMORY=0 measures without)
    renderer, generator = build(device)
    renderer.compute_dtype = PRECISIONS[args.precision]
    image = torch.rand(1, 3, 256, 256, device=device) * 2 - 1
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
               or platform.machine(), "threads": torch.get_num_threads(), "precision": args.precision,
               "keep_freed_memory": kept}
    frames = int(args.seconds * 25)
    g = torch.Generator().manual_seed(0)
    latents = (torch.randn(max(frames, args.frames), 20, generator=g) * 0.3).to(device)
    batch = args.batch or None

    # warm-up (kernel selection, caches) so that neither side pays it
    portrait = encode_portrait(renderer, image)
    render_frames(renderer, portrait, latents[:4], batch_size=batch)
    naive_render(renderer, portrait.wa, list(portrait.feats), latents[:1], Path(tempfile.mkdtemp()))

    if args.frames:
        n = args.frames
        k = min(n, args.naive_frames or n)
        with tempfile.TemporaryDirectory() as d:
            _, t_naive = timed(lambda: naive_render(renderer, portrait.wa, list(portrait.feats), latents[:k], Path(d)),
                               device)
        t_naive *= n / k
        _, t_ours = timed(lambda: render_frames(renderer, portrait, latents[:n], batch_size=batch), device)
        results["renderer"] = {"frames": n, "naive_s_per_frame": t_naive / n, "ours_s_per_frame": t_ours / n,
                               "naive_fps": n / t_naive, "ours_fps": n / t_ours, "speedup": t_naive / t_ours}
        if device.type == "cuda":
            ref = render_frames(renderer, portrait, latents[:64], batch_size=32)
            for name, dt in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
                renderer.compute_dtype = dt
                out = render_frames(renderer, portrait, latents[:64], batch_size=32)
                _, t = timed(lambda: render_frames(renderer, portrait, latents[:n], batch_size=batch or 64), device)
                err = (out - ref).abs()
                results[f"renderer_{name}"] = {"fps": n / t, "max_abs_err": float(err.max()),
                                               "mean_abs_err": float(err.mean()), "speedup_vs_naive": t_naive / t}
            renderer.compute_dtype = torch.float32
    if args.seconds > 0:
        speech = torch.randn(1, 4 * frames, 39, device=device)
        wa, alpha0 = portrait.wa, portrait.alpha0
        noise = torch.randn(1, frames, 20, generator=g).to(device)
        _, t_ns = timed(lambda: naive_sample(generator, wa, alpha0, speech, noise, args.steps), device)
        motion, t_os = timed(lambda: generator.sample(generator.condition(speech, wa, alpha0), noise,
                                                      steps=args.steps), device)
        results["sampler"] = {"frames": frames, "steps": args.steps, "naive_s": t_ns, "ours_s": t_os,
                              "speedup": t_ns / t_os}
        try:
            import av  # noqa: F401
        except ImportError:
            print("PyAV is not installed: skipping the whole-pipeline comparison (it writes mp4s)", file=sys.stderr)
        else:
            results["pipeline"] = compare_pipeline(renderer, generator, image, speech, noise, latents, frames,
                                                   args.steps, batch, args.seconds, device)
    results["peak_memory_mb"] = peak_mb(device)
    print(json.dumps(results, indent=2))
    record.save("run", results, device=args.device)


if __name__ == "__main__":
    main()
