"""Derives the example workflows' inputs in examples/ from the authors' demo media, so every template has its input
files on a fresh install (the pack copies them into ComfyUI's input folder at start-up, nodes/sample_inputs.py).

    python docs/samples.py      # rewrites examples/two_faces.jpg, speaker_1.wav, speaker_2.wav, driving.mp4

- two_faces.jpg: the Mona Lisa and the statue portraits side by side (1024x512), the conversation's picture.
- speaker_1.wav, speaker_2.wav: statue.wav cut in two at the pause between its sentences; speaker 1 says the first
  sentence, speaker 2 the second, each silent while the other talks (both as long as statue.wav).
- driving.mp4: the first seconds of the talking-face sample video, with its sound, for the video-driven workflow.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MEDIA = ROOT / "tests" / "fixtures" / "media"
SPLIT_S = 2.84  # inside the 0.4 s pause of statue.wav between its two sentences
DRIVING_S = 5.0


def two_faces(out: Path) -> None:
    from PIL import Image

    picture = Image.new("RGB", (1024, 512))
    for i, name in enumerate((EXAMPLES / "monalisa.jpg", MEDIA / "statue.jpg")):
        picture.paste(Image.open(name).convert("RGB").resize((512, 512), Image.BICUBIC), (512 * i, 0))
    picture.save(out, quality=88, optimize=True)


def speakers(first: Path, second: Path) -> None:
    with wave.open(str(EXAMPLES / "statue.wav"), "rb") as src:
        params = src.getparams()
        speech = np.frombuffer(src.readframes(src.getnframes()), dtype=np.int16)
    split = int(SPLIT_S * params.framerate)
    silent = np.zeros_like(speech)
    for path, keep in ((first, slice(0, split)), (second, slice(split, None))):
        track = silent.copy()
        track[keep] = speech[keep]
        with wave.open(str(path), "wb") as dst:
            dst.setparams(params)
            dst.writeframes(track.tobytes())


def driving(out: Path) -> None:
    import av

    with av.open(str(MEDIA / "driving_talking_face.mp4")) as src, av.open(str(out), "w") as dst:
        video = dst.add_stream("libx264", rate=25, options={"crf": "26", "preset": "slow"})
        video.width, video.height, video.pix_fmt = 256, 256, "yuv420p"
        audio_in = src.streams.audio[0]
        audio = dst.add_stream("aac", rate=audio_in.rate, layout="mono")
        audio.bit_rate = 48_000
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=audio_in.rate)
        for i, frame in enumerate(src.decode(video=0)):
            if i >= int(DRIVING_S * 25):
                break
            for packet in video.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")):
                dst.mux(packet)
        for packet in video.encode():
            dst.mux(packet)
        src.seek(0)
        for frame in src.decode(audio=0):
            if frame.time is not None and frame.time >= DRIVING_S:
                break
            for mono in resampler.resample(frame):
                for packet in audio.encode(mono):
                    dst.mux(packet)
        for packet in audio.encode():
            dst.mux(packet)


def main() -> None:
    two_faces(EXAMPLES / "two_faces.jpg")
    speakers(EXAMPLES / "speaker_1.wav", EXAMPLES / "speaker_2.wav")
    driving(EXAMPLES / "driving.mp4")
    for name in ("two_faces.jpg", "speaker_1.wav", "speaker_2.wav", "driving.mp4"):
        print(f"{name}: {(EXAMPLES / name).stat().st_size // 1000} kB")


if __name__ == "__main__":
    main()
