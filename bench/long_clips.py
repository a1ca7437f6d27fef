"""Peak memory and time of sampling the motion of long clips: speech features, then the sampler, as `anitalker motion`
does them, before and after the one-pass sampler.

    python -m bench.long_clips --minutes 1 2 3 10 --before b810673      # JSON in bench/results/long_clips-*.json

Each case runs in its own process, so its peak resident memory (VmHWM) is its own: a models folder of the real sizes
with random weights (the fixtures' rule for stage 1 and the two generators, a HuBERT of chinese-hubert-large's
shape), speech (statue.wav repeated to the length), the portrait encoded, then the features and the motion, with
the peak taken separately for each (reset through /proc/self/clear_refs), from the memory the process holds once the
models are loaded. *after*: this checkout, through ``SpeechMotion`` as the command runs it. *estimate*: this
checkout's estimate of that run, alone in its process (the warm-up's freed memory would otherwise raise the run's
starting point), to set beside the *after* figures. *before*: the code of the revision given (``git archive``),
whose sampler and HuBERT cut clips over 60 s into windows, through the same core calls (``features_from_audio``,
``generate_motion``). Memory does not depend on the number of denoising steps and each step costs the same, so a
few steps are run and the time per step is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

VARIANTS = ("mfcc_full_control", "hubert_audio_only")
SAMPLE_RATE = 16000


def make_models(folder: Path) -> Path:
    from anitalker_core.weights.files import STAGE1, STAGE2
    from bench.bench_inputs import hubert_of_real_size
    from tests.support.golden import write_stage1, write_stage2

    folder.mkdir(exist_ok=True)
    write_stage1(folder / STAGE1)
    for variant in VARIANTS:
        write_stage2(folder / STAGE2[variant], variant)
    hubert_of_real_size(folder / "chinese-hubert-large")
    return folder


def child(args: argparse.Namespace) -> None:
    if args.code:
        sys.path.insert(0, args.code)  # the revision's package before this checkout's
    import numpy as np
    import torch
    from PIL import Image

    from anitalker_core.audio.waveform import load_audio_file
    from anitalker_core.models.checkpoints import load_stage1, load_stage2
    from anitalker_core.weights.files import STAGE2
    from anitalker_core.pipeline import portrait_from_image
    from anitalker_core.memory import resident_memory
    from tests.support import peak_memory
    from tests.support.golden import MEDIA

    assert Path(sys.modules["anitalker_core"].__file__).is_relative_to(Path(args.code or REPO))
    from anitalker_core.device_policy import keep_freed_memory

    keep_freed_memory()  # as the command and its workers run
    torch.set_grad_enabled(False)
    models, variant, steps = Path(args.models), args.variant, args.steps
    image = torch.from_numpy(np.asarray(Image.open(MEDIA / "monalisa.jpg").convert("RGB")).copy()).float().div(255)
    portrait = portrait_from_image(load_stage1(models / "stage1.ckpt", device="cpu"), image, "full")
    waveform, rate = load_audio_file(Path(args.audio))
    generator = load_stage2(models / STAGE2[variant], device="cpu")

    def encoder():
        from anitalker_core.audio.features import HubertFeatures, MfccFeatures

        return HubertFeatures(models / "chinese-hubert-large") if "hubert" in variant else MfccFeatures()

    marks: dict = {}
    peaks: dict[str, int] = {}

    def progress(desc: str):
        now = time.perf_counter()
        if desc == "sampling motion":  # the features are done
            peaks["features"] = peak_memory.peak_rss()
            marks["features_s"] = now - marks["start"]
            peak_memory.reset_peak()
        if desc != "sampling motion":
            return None
        step_times: list[float] = []
        marks["steps"] = step_times
        return lambda done, total: step_times.append(time.perf_counter())

    result = {"variant": variant, "minutes": args.minutes, "code": args.label, "steps": steps,
              "load_average_at_start": round(os.getloadavg()[0], 2)}
    if args.label == "estimate":
        from anitalker_core.options import ClipOptions
        from anitalker_core.pipeline import SpeechMotion
        from anitalker_core.stages.estimate import run_estimate

        sampling = SpeechMotion(generator, encoder(), portrait, waveform, rate,
                                ClipOptions(variant=variant, steps=steps))
        start = time.perf_counter()
        estimate = run_estimate(sampling.steps(), torch.device("cpu"))
        result.update(warm_up_s=round(time.perf_counter() - start, 1), estimated_run_s=round(estimate.seconds, 1),
                      estimated_parts_s={p.name: round(p.seconds, 1) for s in estimate.steps for p in s.parts},
                      estimated_extra_mb=round(estimate.host_extra / 2**20),
                      estimated_needs_mb={n.what: round(n.nbytes / 2**20) for n in estimate.host_needs},
                      estimated_extra_by_step_mb={
                          "features": round(sum(n.nbytes for n in estimate.steps[0].host) / 2**20),
                          "sampling": round(sum(n.nbytes for n in estimate.steps[0].keeps + estimate.steps[1].host)
                                            / 2**20)})
        print(json.dumps(result))
        return
    speech = [encoder()]  # loaded before the measurement, like the generator; the run may let it go
    from anitalker_core.audio.waveform import prepare_waveform

    speech[0](prepare_waveform(waveform, rate)[0][:SAMPLE_RATE])  # weights read from mapped files become resident
    in_use = resident_memory()
    peak_memory.reset_peak()
    marks["start"] = time.perf_counter()
    if args.label == "after":
        from anitalker_core.options import ClipOptions
        from anitalker_core.pipeline import SpeechMotion

        sampling = SpeechMotion(generator, speech.pop(), portrait, waveform, rate,
                                ClipOptions(variant=variant, steps=steps))
        del generator
        motion = sampling.motion(progress)
    else:
        from anitalker_core.pipeline import features_from_audio, generate_motion

        audio = features_from_audio(speech.pop(), waveform, rate, progress("speech features"))
        motion = generate_motion(generator, portrait, audio, steps=steps, callback=progress("sampling motion"))
    end = time.perf_counter()
    peaks["sampling"] = peak_memory.peak_rss()
    times = marks["steps"]
    # one step over the whole clip: the windowed sampler reports each window's steps
    per_step = (times[-1] - times[0]) / (len(times) - 1) * len(times) / steps if len(times) > 1 else None
    result.update(frames=motion.num_frames, features_s=round(marks["features_s"], 1),
                  sampling_s=round(end - marks["start"] - marks["features_s"], 1),
                  s_per_step=None if per_step is None else round(per_step, 2), in_use_mb=round(in_use / 2**20),
                  features_peak_mb=round(peaks["features"] / 2**20), sampling_peak_mb=round(peaks["sampling"] / 2**20),
                  peak_mb=round(max(peaks.values()) / 2**20),
                  extra_mb=round((max(peaks.values()) - in_use) / 2**20), run_s=round(end - marks["start"], 1),
                  load_average_at_end=round(os.getloadavg()[0], 2))
    print(json.dumps(result))


def main() -> None:
    from bench import record
    from bench.bench_inputs import (
        add_child_options,
        checkout,
        run_child,
        speech_of_length,
    )

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 2, 3, 10])
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--steps", type=int, default=3, help="denoising steps run (memory and time per step do not "
                                                         "depend on it)")
    ap.add_argument("--before", metavar="REVISION", help="also run the code of this revision (e.g. main)")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--code", help=argparse.SUPPRESS)
    ap.add_argument("--label", help=argparse.SUPPRESS)
    add_child_options(ap)
    args = ap.parse_args()
    if args.child:
        args.minutes = args.minutes[0]
        child(args)
        return
    runs = []
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        models = make_models(work / "models")
        codes = [("after", ""), ("estimate", "")]
        if args.before:
            codes.append(("before", str(checkout(args.before, work / "before"))))
        for minutes in args.minutes:
            audio = speech_of_length(work / f"speech_{minutes:g}min.wav", minutes * 60)
            for variant in args.variants:
                for label, code in codes:
                    result = run_child(__spec__.name, f"{label} {variant} {minutes:g} min", [
                        "--minutes", str(minutes), "--variant", variant, "--steps", str(args.steps),
                        "--audio", str(audio), "--models", str(models), "--label", label] +
                        (["--code", code] if code else []))
                    print(json.dumps(result), flush=True)
                    runs.append(result)
    ratios = {}
    for variant in args.variants:
        for label in ("after", "before"):
            peaks = {r["minutes"]: r["peak_mb"] for r in runs if r["variant"] == variant and r["code"] == label}
            if 2 in peaks and 10 in peaks:
                ratios[f"{variant} {label}"] = round(peaks[10] / peaks[2], 3)
    record.save("long_clips", {"steps": args.steps, "before": args.before, "runs": runs,
                               "peak_10min_over_2min": ratios})


if __name__ == "__main__":
    main()
