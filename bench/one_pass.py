"""`anitalker motion` on a long clip against the official one-pass computation: the latents of the command (attention
in blocks of queries) beside those of the same model attending over the whole sequence at once.

    python -m bench.one_pass --seconds 120 --steps 50 --before b810673      # JSON in bench/results/one_pass-*.json

The parity tests show that the pack's conformers, generator and features compute what the official code computes;
with every conformer attending over all queries at once (one block), the pack's sampling is the official demo's
one pass. Each case runs in its own process on the same inputs: random-weight checkpoints of the real sizes (the
fixtures' rule), statue.wav repeated to the length, the portrait uncropped (``--crop full``), the official demo's
start noise (``--seed-mode official``). *command*: ``anitalker motion`` itself, recording the attention blocks it
used. *whole*: the same run with whole-sequence attention. *before* (optional): the code of the revision given,
whose sampler cut clips over 60 s into cross-faded windows.
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
VARIANT = "mfcc_full_control"


def child(args: argparse.Namespace) -> None:
    if args.code:
        sys.path.insert(0, args.code)  # the revision's package before this checkout's
    import numpy as np
    import torch
    from PIL import Image

    from tests.support.golden import MEDIA

    import anitalker_core

    assert Path(anitalker_core.__file__).is_relative_to(Path(args.code or REPO)), anitalker_core.__file__
    out, models = Path(args.workdir) / f"{args.label}.safetensors", Path(args.models)
    portrait = MEDIA / "monalisa.jpg"
    start = time.perf_counter()
    result: dict = {"case": args.label, "load_average_at_start": round(os.getloadavg()[0], 2)}
    if args.label == "command":
        from anitalker_core.app.cli import main
        from anitalker_core.models import conformer

        blocks: set = set()
        real = conformer.RelativeSelfAttention.forward

        def recording(self, x, pos, rows=None):
            blocks.add((x.shape[0], x.shape[1], rows))
            return real(self, x, pos, rows)

        conformer.RelativeSelfAttention.forward = recording
        code = main(["motion", "--portrait", str(portrait), "--crop", "full", "--audio", args.audio, "--variant",
                     VARIANT, "--models", str(models), "--offline", "--steps", str(args.steps), "--seed", "0",
                     "--seed-mode", "official", "--device", "cpu", "--out", str(out)])
        if code != 0:
            raise SystemExit(f"anitalker motion failed with {code}")
        result["attention"] = [{"batch": b, "frames": t, "queries_per_block": r, "blocks": -(-t // r)}
                               for b, t, r in sorted(blocks) if t > 1000]
    else:
        from anitalker_core.audio.features import MfccFeatures
        from anitalker_core.audio.waveform import load_audio_file
        from anitalker_core.models.checkpoints import load_stage1, load_stage2
        from anitalker_core.weights.files import STAGE1, STAGE2
        from anitalker_core.motion.files import save_motion
        from anitalker_core.pipeline import features_from_audio, generate_motion, portrait_from_image

        torch.set_grad_enabled(False)
        image = torch.from_numpy(np.asarray(Image.open(portrait).convert("RGB")).copy()).float().div(255)
        code = portrait_from_image(load_stage1(models / STAGE1), image, "full")
        generator = load_stage2(models / STAGE2[VARIANT])
        if args.label == "whole":
            from anitalker_core.models.conformer import Conformer

            for module in generator.modules():
                if isinstance(module, Conformer):
                    module.query_rows = 10**9  # every query in one block: the official computation
        audio = features_from_audio(MfccFeatures(), *load_audio_file(Path(args.audio)))
        save_motion(generate_motion(generator, code, audio, seed=0, steps=args.steps, seed_mode="official"), out)
    result.update(seconds=round(time.perf_counter() - start, 1), file=str(out),
                  load_average_at_end=round(os.getloadavg()[0], 2))
    print(json.dumps(result))


def compare(latents, reference, joins: list[tuple[int, int]]) -> dict:
    """Max and mean absolute difference over every frame, and the largest within 10 frames of a join (the frames
    two windows shared)."""
    diff = (latents - reference).abs()[0]  # (frames, 20)
    per_frame = diff.max(dim=-1).values
    near = sorted({f for a, b in joins for f in range(max(0, a - 10), min(diff.shape[0], b + 10))})
    far = [f for f in range(diff.shape[0]) if f not in set(near)]
    return {"max_abs": float(per_frame.max()), "mean_abs": float(diff.mean()),
            "worst_frame": int(per_frame.argmax()),
            "max_abs_near_joins": float(per_frame[near].max()) if near else None,
            "max_abs_elsewhere": float(per_frame[far].max()),
            "latent_std": float(reference.std())}


def main() -> None:
    from bench.bench_inputs import add_child_options, run_child, speech_of_length

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--before", metavar="REVISION", help="also run the code of this revision (e.g. main)")
    ap.add_argument("--code", help=argparse.SUPPRESS)
    ap.add_argument("--label", help=argparse.SUPPRESS)
    add_child_options(ap)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    from anitalker_core.weights.files import STAGE1, STAGE2
    from anitalker_core.motion.files import load_motion
    from bench import record
    from bench.bench_inputs import checkout
    from tests.support.golden import write_stage1, write_stage2

    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        models = work / "models"
        models.mkdir()
        write_stage1(models / STAGE1)
        write_stage2(models / STAGE2[VARIANT], VARIANT)
        audio = speech_of_length(work / "speech.wav", args.seconds)
        cases = [("command", ""), ("whole", "")]
        if args.before:
            cases.append(("before", str(checkout(args.before, work / "before"))))
        runs = {}
        for label, code in cases:
            runs[label] = run_child(__spec__.name, label, [
                "--label", label, "--audio", str(audio), "--models", str(models), "--workdir", str(work),
                "--steps", str(args.steps)] + (["--code", code] if code else []))
            print(json.dumps(runs[label]), flush=True)
        latents = {label: load_motion(run.pop("file")).latents for label, run in runs.items()}
    frames = latents["whole"].shape[1]
    # where the 60 s windows met: 1,500 frames each, the last 50 shared with the next and cross-faded
    old_joins = [(a, a + 50) for a in range(1450, frames - 50, 1450)]
    figures = {"seconds": args.seconds, "frames": frames, "steps": args.steps, "variant": VARIANT,
               "seed_mode": "official", "runs": runs,
               "command_vs_whole": compare(latents["command"], latents["whole"], old_joins)}
    if "before" in latents:
        figures["before_vs_whole"] = compare(latents["before"], latents["whole"], old_joins)
    record.save("one_pass", figures)


if __name__ == "__main__":
    main()
