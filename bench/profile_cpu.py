"""Where a CPU render's time goes, and how close it runs to the machine's arithmetic peak.

    python -m bench.profile_cpu                      # fp32, batches of 4 frames; JSON in bench/results/
    python -m bench.profile_cpu --batch 2 --precision bf16
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python -m bench.profile_cpu   # as on a CPU without AVX-512

Prints the per-operator table of one render batch (torch.profiler) and the heaviest operator shapes, counts the
render's floating-point operations (torch's FlopCounterMode) and sets the achieved GFLOP/s against a peak
measured in the same run: a large fp32 matrix product on all cores, the most a CPU sustains in practice.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from anitalker_core.device_policy import PRECISIONS, autocast, keep_freed_memory
from anitalker_core.video.renderer import encode_portrait
from bench import record
from bench.run import build


def matmul_peak_gflops(n: int = 2048, seconds: float = 2.0) -> float:
    """fp32 GFLOP/s of repeated n x n matrix products: the practical peak of these cores."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # one-off set-up
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        runs += 1
    return 2 * n**3 * runs / (time.perf_counter() - start) / 1e9


def render_flops(renderer, portrait, latents) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        renderer.render(portrait.wa, latents, list(portrait.feats))
    return counter.get_total_flops()


def compile_figures(renderer, portrait, latents, args, eager: torch.Tensor) -> dict:
    """The decoder under torch.compile: its compile time, s/frame and largest difference from the eager frames."""
    decoder = torch.compile(renderer.dec, dynamic=False)
    start = time.perf_counter()
    out = decoder(portrait.wa, latents, list(portrait.feats))
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.repeats):
        decoder(portrait.wa, latents, list(portrait.feats))
    per_frame = (time.perf_counter() - start) / (args.repeats * args.batch)
    print(f"torch.compile: {per_frame:.3f} s/frame after {compile_s:.0f} s of compiling; max abs difference "
          f"{float((out - eager).abs().max()):.1e}")
    return {"s_per_frame": round(per_frame, 4), "compile_s": round(compile_s, 1),
            "max_abs_diff": float((out - eager).abs().max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3, help="timed batches after one warm-up batch")
    ap.add_argument("--precision", default="fp32", choices=list(PRECISIONS))
    ap.add_argument("--rows", type=int, default=20)
    ap.add_argument("--compile", action="store_true",
                    help="also time the decoder under torch.compile (inductor; needs a C++ compiler) in the same run")
    args = ap.parse_args()
    keep_freed_memory()
    torch.set_grad_enabled(False)
    cpu = torch.device("cpu")
    renderer, _ = build(cpu)
    portrait = encode_portrait(renderer, torch.rand(1, 3, 256, 256) * 2 - 1)
    latents = portrait.alpha0 + 0.3 * torch.randn(args.batch, 20, generator=torch.Generator().manual_seed(0))
    dtype = PRECISIONS[args.precision]

    def render():
        with autocast(cpu, dtype):
            return renderer.render(portrait.wa, latents, list(portrait.feats))

    render()  # kernel choice, caches
    start = time.perf_counter()
    for _ in range(args.repeats):
        render()
    per_frame = (time.perf_counter() - start) / (args.repeats * args.batch)
    compiled = compile_figures(renderer, portrait, latents, args, render()) if args.compile else None
    flops = render_flops(renderer, portrait, latents) / args.batch
    peak = matmul_peak_gflops()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        render()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40)
    shapes = prof.key_averages(group_by_input_shape=True)
    heaviest = sorted(shapes, key=lambda e: e.self_cpu_time_total, reverse=True)[: args.rows]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    print(table)
    print("heaviest operator shapes:")
    for e in heaviest:
        print(f"  {e.self_cpu_time_total / 1e3:9.1f} ms  {e.key:<28} {str(e.input_shapes)[:110]}")
    achieved = flops / per_frame / 1e9
    print(f"\n{per_frame:.3f} s/frame, {flops / 1e9:.1f} GFLOP/frame, {achieved:.0f} GFLOP/s against a measured peak "
          f"of {peak:.0f} GFLOP/s ({achieved / peak:.0%}); {torch.get_num_threads()} threads, "
          f"capability {torch.backends.cpu.get_cpu_capability()}")
    record.save("profile_cpu", {
        "batch": args.batch, "precision": args.precision, "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
        "s_per_frame": round(per_frame, 4), "gflop_per_frame": round(flops / 1e9, 2),
        "achieved_gflops": round(achieved, 1), "peak_gflops": round(peak, 1),
        "share_of_peak": round(achieved / peak, 3), "compiled": compiled,
        "ops": [{"op": e.key, "self_ms": round(e.self_cpu_time_total / 1e3, 1), "calls": e.count,
                 "share": round(e.self_cpu_time_total / total, 3)}
                for e in sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[: args.rows]],
        "shapes": [{"op": e.key, "self_ms": round(e.self_cpu_time_total / 1e3, 1), "input_shapes": str(e.input_shapes)}
                   for e in heaviest],
    })


if __name__ == "__main__":
    main()
