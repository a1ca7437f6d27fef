"""Where a CPU render's time goes, and how close it runs to the machine's arithmetic peak.

    python -m bench.profile_cpu                      # fp32, batches of 4 frames; JSON in bench/results/
    python -m bench.profile_cpu --batch 2 --precision bf16
    python -m bench.profile_cpu --batch 2 --onnxruntime --openvino   # the decoder exported to ONNX, same run
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python -m bench.profile_cpu   # as on a CPU without AVX-512

Prints the per-operator table of one render batch (torch.profiler) and the heaviest operator shapes, counts the
render's floating-point operations (torch's FlopCounterMode) and sets the achieved GFLOP/s against a peak
measured in the same run: a large fp32 matrix product on all cores, the most a CPU sustains in practice.

``--onnxruntime`` / ``--openvino`` (optional packages, not in requirements.txt) ask whether another CPU runtime
renders the same decoder faster than eager PyTorch: the decoder is exported to ONNX at this batch size in fp32 and
timed like the eager render, with its largest difference from the eager frames. OpenVINO's oneDNN obeys
ONEDNN_MAX_CPU_ISA; ONNX Runtime's MLAS picks its kernels from CPUID alone, so under ONEDNN_MAX_CPU_ISA=AVX2 on
an AVX-512 machine its figure is an upper bound for an AVX2-only CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from anitalker_core.device_policy import PRECISIONS, autocast, keep_freed_memory
from anitalker_core.models.layers import ModulatedConv2d
from anitalker_core.models.warp_decoder import Direction
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


class _DecoderGraph(nn.Module):
    """The decoder with tensor arguments only (the feature maps unpacked), as ONNX export wants them."""

    def __init__(self, dec: nn.Module) -> None:
        super().__init__()
        self.dec = dec

    def forward(self, wa: torch.Tensor, alpha: torch.Tensor, *feats: torch.Tensor) -> torch.Tensor:
        return self.dec(wa, alpha, list(feats))


def _returning(value: object) -> Callable[..., object]:
    return lambda *_: value


@contextlib.contextmanager
def frozen_weight_caches(dec: nn.Module, fused_upsample: bool) -> Iterator[None]:
    """The decoder's weight-derived caches (motion basis, demodulation norms, upsampling kernels) are keyed on data
    pointers, which torch.export's fake tensors lack: fill them once and let the export read them as constants.
    ``fused_upsample``: the upsampling layers' GPU form (one 6x6 transposed convolution fused with the blur)
    instead of the CPU one (four phase convolutions written into a strided buffer, which ONNX turns into ScatterND
    and Transposes)."""
    patched = []
    for module in dec.modules():
        if isinstance(module, Direction):
            module.basis = _returning(module.basis())
        elif isinstance(module, ModulatedConv2d):
            module._prepare = _returning(module._prepare(torch.float32, fused_upsample))
        else:
            continue
        patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            module.__dict__.pop("basis", None)
            module.__dict__.pop("_prepare", None)


def export_decoder(renderer, inputs: list[torch.Tensor], path: Path, fused_upsample: bool) -> float:
    """Export renderer.dec at this batch size in fp32 with torch.export's exporter (the TorchScript one fails on
    the phase upsampling: a ScatterND of unknown shape feeds the blur's convolution); returns the seconds taken."""
    start = time.perf_counter()
    with frozen_weight_caches(renderer.dec, fused_upsample):
        torch.onnx.export(_DecoderGraph(renderer.dec).eval(), tuple(inputs), str(path), dynamo=True, verbose=False,
                          input_names=["wa", "alpha"] + [f"feat{i}" for i in range(len(inputs) - 2)],
                          output_names=["frames"])
    return time.perf_counter() - start


def runtime_figures(name: str, run: Callable[[], np.ndarray], setup_s: float, args, eager: torch.Tensor) -> dict:
    """One warm-up batch, then ``args.repeats`` timed ones; s/frame and the largest difference from eager."""
    out = torch.from_numpy(run())
    start = time.perf_counter()
    for _ in range(args.repeats):
        run()
    per_frame = (time.perf_counter() - start) / (args.repeats * args.batch)
    diff = float((out - eager).abs().max())
    print(f"{name}: {per_frame:.3f} s/frame after {setup_s:.1f} s of session set-up; max abs difference {diff:.1e}")
    return {"s_per_frame": round(per_frame, 4), "session_s": round(setup_s, 1), "max_abs_diff": diff}


def onnxruntime_figures(model: Path, inputs: list[torch.Tensor], args, eager: torch.Tensor) -> dict:
    """The exported decoder on ONNX Runtime's CPU execution provider (MLAS kernels, full graph optimisation)."""
    import onnxruntime as ort

    start = time.perf_counter()
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    feed = {arg.name: x.numpy() for arg, x in zip(session.get_inputs(), inputs)}
    setup_s = time.perf_counter() - start
    figures = runtime_figures("onnxruntime", lambda: session.run(None, feed)[0], setup_s, args, eager)
    cpuinfo = Path("/proc/cpuinfo")
    return {**figures, "version": ort.__version__, "isa": "MLAS dispatches on CPUID/XCR0 with no override",
            "cpu_has_avx512f": "avx512f" in cpuinfo.read_text() if cpuinfo.exists() else None}


def openvino_figures(model: Path, inputs: list[torch.Tensor], args, eager: torch.Tensor) -> dict:
    """The exported decoder compiled by OpenVINO for its CPU plugin, held to fp32 (it would pick bf16 on CPUs
    with AMX or AVX512_BF16)."""
    import openvino as ov

    start = time.perf_counter()
    compiled = ov.Core().compile_model(ov.convert_model(model), "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    arrays = [x.numpy() for x in inputs]
    setup_s = time.perf_counter() - start
    figures = runtime_figures("openvino", lambda: request.infer(arrays)[0].copy(), setup_s, args, eager)
    return {**figures, "version": ov.__version__, "isa": "oneDNN inside OpenVINO obeys ONEDNN_MAX_CPU_ISA"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3, help="timed batches after one warm-up batch")
    ap.add_argument("--precision", default="fp32", choices=list(PRECISIONS))
    ap.add_argument("--rows", type=int, default=20)
    ap.add_argument("--compile", action="store_true",
                    help="also time the decoder under torch.compile (inductor; needs a C++ compiler) in the same run")
    ap.add_argument("--onnxruntime", action="store_true",
                    help="also time the decoder exported to ONNX on ONNX Runtime's CPU provider (pip install "
                         "onnxruntime onnx onnxscript)")
    ap.add_argument("--openvino", action="store_true",
                    help="also time the exported decoder on OpenVINO's CPU plugin (pip install openvino)")
    ap.add_argument("--onnx-upsample", default="phases", choices=["phases", "fused"],
                    help="the upsampling form exported: the CPU's four phase convolutions (what eager runs here) "
                         "or the GPU's one transposed convolution fused with the blur")
    args = ap.parse_args()
    runtimes = {name: fn for name, fn in (("onnxruntime", onnxruntime_figures), ("openvino", openvino_figures))
                if getattr(args, name)}
    if runtimes and args.precision != "fp32":
        ap.error("--onnxruntime/--openvino export the decoder in fp32")
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
    exported: dict = {}
    if runtimes:
        inputs = [portrait.wa, latents, *portrait.feats]
        eager = render()
        # the yardstick for their differences: the batched eager path against the single-frame reference arithmetic
        single = torch.cat([renderer.render(portrait.wa, latents[i:i + 1], list(portrait.feats))
                            for i in range(args.batch)])
        yardstick = float((eager - single).abs().max())
        exported["eager_batched_vs_single_frame_max_abs_diff"] = yardstick
        print(f"eager, batched against single frames: max abs difference {yardstick:.1e}")
        with tempfile.TemporaryDirectory() as tmp:
            model = Path(tmp) / "decoder.onnx"
            export_s = export_decoder(renderer, inputs, model, args.onnx_upsample == "fused")
            print(f"ONNX export ({args.onnx_upsample} upsampling): {export_s:.1f} s")
            for name, figures in runtimes.items():
                exported[name] = {**figures(model, inputs, args, eager), "export_s": round(export_s, 1),
                                  "upsample": args.onnx_upsample}
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
        "share_of_peak": round(achieved / peak, 3), "compiled": compiled, **exported,
        "ops": [{"op": e.key, "self_ms": round(e.self_cpu_time_total / 1e3, 1), "calls": e.count,
                 "share": round(e.self_cpu_time_total / total, 3)}
                for e in sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[: args.rows]],
        "shapes": [{"op": e.key, "self_ms": round(e.self_cpu_time_total / 1e3, 1), "input_shapes": str(e.input_shapes)}
                   for e in heaviest],
    })


if __name__ == "__main__":
    main()
