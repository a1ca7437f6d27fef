"""Calm Silence on real speech with a 2 s pause inserted: the issue's figures, and the README's motion plot.

    python -m bench.calm_silence [--steps 10] [--plot web/docs/img/motion_plot.png]

Speech: the sample statue.wav with 2 s of room noise (-60 dB) inserted at 4.4 s. Motions: a speech-like
synthetic motion (head 0.05-0.8 Hz, mouth 2-8 Hz, jitter; it mumbles through the pause like the generator) and
a motion sampled by a random-weight MFCC full-control generator for the same audio. For each: the fall of the
mean frame-to-frame change inside the inserted pause (away from the ramps), the largest step at the ramps
against the largest in speech, and whether frames more than 0.5 s from any pause are bit-identical.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from bench import record
from tests.support.golden import write_stage2
from tests.support.speech_motion import (
    PAUSE_AT_S,
    PAUSE_S,
    RATE,
    calm_figures,
    generated_motion,
    speech_like_latents,
    speech_with_pause,
)

from anitalker_core.audio.voice_activity import detect_voice_activity
from anitalker_core.motion.calm_silence import calm_silence, calm_weight
from anitalker_core.motion.plot import plot_motion
from anitalker_core.types import Motion


def report(name: str, motion: Motion, wave, results: dict) -> Motion:
    activity = detect_voice_activity(wave, RATE, motion.num_frames, motion.fps)
    (pause,) = [p for p in activity.pauses if p.start_s < PAUSE_AT_S + PAUSE_S and p.end_s > PAUSE_AT_S]
    calm = calm_silence(motion, activity, strength=1.0)
    fig = calm_figures(motion.latents[0], calm.latents[0], calm_weight(activity), activity.speech,
                       (pause.start, pause.end))
    print(f"{name}: {activity.describe()}")
    print(f"  inserted pause {pause.start_s:.2f}-{pause.end_s:.2f} s: mean frame-to-frame change "
          f"-{100 * fig.pause_fall:.1f} %; largest step at the ramps {fig.largest_ramp_step:.3f} vs in speech "
          f"{fig.largest_speech_step:.3f}; frames > 0.5 s from a pause unchanged: {fig.far_frames_unchanged}")
    results[name] = {"pause_s": [round(pause.start_s, 2), round(pause.end_s, 2)],
                     "pause_fall": round(fig.pause_fall, 4), "largest_ramp_step": round(fig.largest_ramp_step, 4),
                     "largest_speech_step": round(fig.largest_speech_step, 4),
                     "far_frames_unchanged": fig.far_frames_unchanged}
    return calm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="sampling steps of the random-weight generator")
    parser.add_argument("--plot", type=Path, default=None, help="write the README's motion plot (PNG) here")
    args = parser.parse_args()

    wave = speech_with_pause()
    frames = wave.numel() // (RATE // 25)
    synthetic = Motion(latents=speech_like_latents(frames, seed=0))
    results: dict = {}
    calm = report("speech-like motion", synthetic, wave, results)
    with tempfile.TemporaryDirectory() as tmp:
        report(f"generated motion (random weights, {args.steps} steps)",
               generated_motion(write_stage2(Path(tmp) / "stage2.ckpt", "mfcc_full_control"), wave,
                                steps=args.steps), wave, results)
    record.save("calm_silence", results)

    if args.plot:
        from PIL import Image

        activity = detect_voice_activity(wave, RATE, frames)
        image = plot_motion([("as generated", synthetic), ("Calm Silence 1", calm)], activity, width=800,
                            height=420)
        pixels = (image[0].numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).quantize(colors=64).save(args.plot, optimize=True)
        print(f"wrote {args.plot} ({args.plot.stat().st_size / 1024:.0f} kB)")


if __name__ == "__main__":
    main()
