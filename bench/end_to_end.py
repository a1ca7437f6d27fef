"""Portrait + speech -> mp4, end to end, as peers publish it: seconds per second of audio and peak memory.

    python -m bench.end_to_end --device cuda --seconds 30                       # 256x256, HuBERT, 50 steps
    python -m bench.end_to_end --device cuda --seconds 30 --canvas 1920x1080 --upscale x4   # pasted back, upscaled

Runs the headless command in-process (`anitalker animate`: HuBERT features, 50 diffusion steps, rendering,
optional upscale and paste back, H.264 encoding with the audio) on statue.wav repeated to the length. Weights
are random with the real shapes: the fixtures' rule for stage 1 and stage 2, a HuBERT of chinese-hubert-large's
size, and for --upscale x4 an ESRGAN (RRDBNet, 23 blocks, 4x) like RealESRGAN_x4plus, so the compute is real and
nothing is downloaded. The result (seconds per second of audio, peak GPU memory, peak resident memory) is kept
in bench/results/.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def esrgan_x4(path: Path, blocks: int = 23, features: int = 64, growth: int = 32) -> Path:
    """A RealESRGAN_x4plus-shaped RRDBNet with random weights, in the layout spandrel recognises."""
    g = torch.Generator().manual_seed(0)

    def conv(cin, cout):
        return torch.randn(cout, cin, 3, 3, generator=g) * (0.1 / (cin * 9) ** 0.5), torch.zeros(cout)

    sd = {}

    def put(name, cin, cout):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = conv(cin, cout)

    put("conv_first", 3, features)
    for b in range(blocks):
        for r in range(1, 4):
            for c in range(1, 6):
                put(f"body.{b}.rdb{r}.conv{c}", features + (c - 1) * growth, growth if c < 5 else features)
    put("conv_body", features, features)
    put("conv_up1", features, features)
    put("conv_up2", features, features)
    put("conv_hr", features, features)
    put("conv_last", features, 3)
    torch.save(sd, path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--canvas", default="", help="WxH: paste back into a portrait of this size (e.g. 1920x1080)")
    ap.add_argument("--upscale", choices=["", "x4"], default="", help="x4: a RealESRGAN_x4plus-sized upscaler")
    ap.add_argument("--precision", default="auto")
    args = ap.parse_args()

    from bench import record
    from bench.bench_inputs import hubert_of_real_size, speech_of_length
    from tests.support.golden import MEDIA, write_stage1, write_stage2
    from PIL import Image

    from anitalker_core.app.cli import main as anitalker

    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        models = work / "models"
        models.mkdir()
        write_stage1(models / "stage1.ckpt")
        write_stage2(models / "stage2_audio_only_hubert.ckpt", "hubert_audio_only")
        hubert_of_real_size(models / "chinese-hubert-large")
        audio = speech_of_length(work / "speech.wav", args.seconds)
        portrait = work / "portrait.png"
        picture = Image.open(MEDIA / "monalisa.jpg").convert("RGB")
        if args.canvas:
            w, h = (int(v) for v in args.canvas.lower().split("x"))
            side = int(0.8 * h)
            canvas = Image.new("RGB", (w, h), (40, 60, 80))
            canvas.paste(picture.resize((side, side), Image.BICUBIC), ((w - side) // 2, (h - side) // 2))
            picture = canvas
        picture.save(portrait)
        command = ["animate", "--portrait", str(portrait), "--audio", str(audio), "--out", str(work / "out.mp4"),
                   "--variant", "hubert_audio_only", "--models", str(models), "--offline", "--steps", str(args.steps),
                   "--device", args.device, "--precision", args.precision]
        if args.canvas:
            command.append("--paste-back")
        if args.upscale:
            command += ["--upscale-model", str(esrgan_x4(work / "RealESRGAN_x4plus.pth"))]
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        code = anitalker(command)
        seconds = time.perf_counter() - t
        if code != 0:
            raise SystemExit(f"anitalker animate failed ({code})")
    figures = {"audio_s": args.seconds, "steps": args.steps, "canvas": args.canvas or "256x256",
               "upscale": args.upscale or None, "wall_s": round(seconds, 2),
               "s_per_audio_s": round(seconds / args.seconds, 3),
               "peak_rss_mb": round(record.peak_rss_mb())}
    if args.device.startswith("cuda"):
        figures["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    print(figures)
    record.save("end_to_end", figures, device=args.device)


if __name__ == "__main__":
    main()
