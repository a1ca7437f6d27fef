"""Peak memory of the headless path on minutes of speech (CPU): features, sampling, streamed rendering.

    python bench/memory.py --minutes 3 [--audio hubert|mfcc] [--render-frames 500]

HuBERT uses a randomly initialised model with chinese-hubert-large's interface (25 hidden states of 1024),
so the feature tensors have their real size. The whole clip is encoded and sampled; rendering streams into an
mp4 like the headless command (memory does not grow after the first chunk, so only the first frames are
rendered by default). Peak resident memory is read from the OS.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--audio", choices=["hubert", "mfcc"], default="hubert")
    ap.add_argument("--steps", type=int, default=10, help="denoising steps (memory does not depend on it)")
    ap.add_argument("--render-frames", type=int, default=500)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    from anitalker_core.audio_features import HubertFeatures, MfccFeatures
    from anitalker_core.audio_io import load_audio_file
    from anitalker_core.motion_autoencoder import MotionAutoencoder
    from anitalker_core.motion_generator import MotionGenerator
    from anitalker_core.pipeline import features_from_audio, generate_motion
    from anitalker_core.renderer import encode_portrait, render_frames
    from anitalker_core.video_io import Mp4Writer
    from golden import MEDIA

    report = {"minutes": args.minutes, "audio": args.audio}
    wave, rate = load_audio_file(MEDIA / "statue.wav")
    reps = int(args.minutes * 60 * rate / wave.shape[1]) + 1
    wave = wave.repeat(1, reps)[:, : int(args.minutes * 60 * rate)]
    with tempfile.TemporaryDirectory() as d:
        if args.audio == "hubert":
            from transformers import HubertConfig, HubertModel

            cfg = HubertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                               do_stable_layer_norm=True, feat_extract_norm="layer")
            HubertModel(cfg).save_pretrained(d)
            encoder = HubertFeatures(d)
            variant = "hubert_audio_only"
        else:
            encoder, variant = MfccFeatures(), "mfcc_pose_only"
        report["after_load_mb"] = rss_mb()
        t = time.perf_counter()
        feats = features_from_audio(encoder, wave, rate)
        report["features_s"] = time.perf_counter() - t
        report["features_mb"] = feats.values.numel() * 4 / 2**20
        report["after_features_mb"] = rss_mb()
        del encoder
        renderer, generator = MotionAutoencoder().eval(), MotionGenerator(variant).eval()
        portrait = encode_portrait(renderer, torch.rand(1, 3, 256, 256) * 2 - 1)
        t = time.perf_counter()
        motion = generate_motion(generator, portrait, feats, steps=args.steps)
        report["sampling_s"] = time.perf_counter() - t
        report["frames"] = motion.num_frames
        report["after_sampling_mb"] = rss_mb()
        t = time.perf_counter()
        n = min(args.render_frames, motion.num_frames)
        with Mp4Writer(Path(d) / "out.mp4", fps=25) as w:
            for s in range(0, n, 250):
                w.write(render_frames(renderer, portrait, motion.latents[0, s:min(s + 250, n)]))
        report["rendered_frames"] = n
        report["render_s"] = time.perf_counter() - t
    report["peak_rss_mb"] = rss_mb()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
