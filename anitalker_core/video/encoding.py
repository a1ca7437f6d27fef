"""How a video file is encoded: its container, codec, bit depth, quality, speed and colour space.

One record for every way a clip is written as a compressed video (the command's mp4, ComfyUI's Save Video with
whatever it asks for), so the choices are checked once, before any frame is rendered, and a request the writers
cannot honour is refused with what they can do instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional, Union

from ..errors import AniTalkerError

CONTAINERS = {"mp4": "mp4", "mkv": "matroska", "webm": "webm"}
"""Containers by the name users pick -> FFmpeg's muxer."""
CODECS = {"h264": "libx264", "av1": "libsvtav1"}
"""Video codecs by the name users pick -> the encoder that writes them."""
AUDIO_CODECS = {"mp4": "aac", "mkv": "aac", "webm": "libopus"}
"""The audio track's codec in each container (WebM carries Opus or Vorbis only)."""
BIT_DEPTHS = {8: "yuv420p", 10: "yuv420p10le"}
"""Bits per sample -> the pixel format handed to the encoder (4:2:0, what players decode everywhere)."""
COLOR_SPACES = ("sRGB",)
"""What the frames are: the renderer works on sRGB pictures, which video tags as BT.709 (SDR). HDR would need a
conversion nobody asked for, so it is refused rather than mislabelled."""
DEFAULT_CRF = {"h264": 18.0, "av1": 30.0}
"""Constant rate factors when none is asked for: visually lossless for talking heads at modest sizes."""
DEFAULT_PRESET = "medium"
"""x264's speed/size trade-off when none is asked for (AV1 takes its encoder's own default)."""
AUTO = "auto"


def _name(value: object) -> str:
    """An enum member (ComfyUI's VideoContainer / VideoCodec) or a plain string -> its lower-case name."""
    return str(getattr(value, "value", value)).lower()


@dataclass(frozen=True)
class VideoEncoding:
    """A compressed video's encoding. ``crf`` and ``preset`` of None take the codec's defaults; ``preset`` only
    applies to H.264 (other codecs ignore it, as ComfyUI does)."""

    container: str = "mp4"
    codec: str = "h264"
    bit_depth: int = 8
    crf: Optional[float] = None
    preset: Optional[str] = None
    color_space: str = "sRGB"

    @classmethod
    def requested(cls, path: Union[str, Path, IO[bytes], None] = None, container: object = AUTO,
                  codec: object = AUTO, bit_depth: Optional[int] = None, crf: Optional[float] = None,
                  preset: Optional[str] = None, color_space: Optional[str] = None) -> "VideoEncoding":
        """What a caller asked for, with "auto" and None resolved the way ComfyUI resolves them: the container
        from the file's extension (mp4 when it says nothing), AV1 for WebM and H.264 otherwise, 8 bits, sRGB."""
        box, kind = _name(container or AUTO), _name(codec or AUTO)
        if box == AUTO:
            suffix = Path(path).suffix.lower().lstrip(".") if isinstance(path, (str, Path)) else ""
            box = suffix if suffix in ("mkv", "webm") else "mp4"
        if kind == AUTO:
            kind = "av1" if box == "webm" else "h264"
        space = color_space if color_space not in (None, AUTO) else "sRGB"
        depth = 8 if bit_depth in (None, AUTO) else bit_depth
        return cls(box, kind, depth, crf, preset, space).check()

    def check(self) -> "VideoEncoding":
        if self.container not in CONTAINERS:
            raise AniTalkerError(f"videos are written as {', '.join(CONTAINERS)}; {self.container!r} is none of them")
        if self.codec not in CODECS:
            raise AniTalkerError(f"videos are encoded as {' or '.join(CODECS)}; {self.codec!r} is neither: choose "
                                 "auto, h264 or av1")
        if self.container == "webm" and self.codec != "av1":
            raise AniTalkerError("WebM carries AV1 here, not H.264: choose codec av1 (or auto), or the mp4 or mkv "
                                 "container")
        if not isinstance(self.bit_depth, int) or isinstance(self.bit_depth, bool) or self.bit_depth not in BIT_DEPTHS:
            raise AniTalkerError(f"the bit depth must be 8 or 10, got {self.bit_depth!r}")
        if self.color_space not in COLOR_SPACES:
            raise AniTalkerError(f"AniTalker renders sRGB (SDR, tagged BT.709); it cannot write {self.color_space!r} "
                                 "without a colour conversion: choose sRGB or auto")
        if self.crf is not None and not (isinstance(self.crf, (int, float)) and 0 <= self.crf <= 63):
            raise AniTalkerError(f"the quality (crf) must be a number from 0 to 63, got {self.crf!r}")
        if self.preset is not None and not isinstance(self.preset, str):
            raise AniTalkerError(f"the encoder preset must be a name such as 'medium' or 'ultrafast', got "
                                 f"{self.preset!r}")
        return self

    @property
    def muxer(self) -> str:
        return CONTAINERS[self.container]

    @property
    def encoder(self) -> str:
        return CODECS[self.codec]

    @property
    def audio_codec(self) -> str:
        return AUDIO_CODECS[self.container]

    @property
    def pix_fmt(self) -> str:
        return BIT_DEPTHS[self.bit_depth]

    @property
    def samples(self) -> str:
        """The frames' sample type that keeps what the encoder stores: 8 bits, or 16 for a 10-bit video."""
        return "uint8" if self.bit_depth == 8 else "uint16"

    def encoder_options(self) -> dict[str, str]:
        crf = DEFAULT_CRF[self.codec] if self.crf is None else float(self.crf)
        options = {"crf": f"{crf:g}"}
        if self.codec == "h264":
            options["preset"] = self.preset or DEFAULT_PRESET
        return options


MP4 = VideoEncoding()
"""H.264 in an mp4, 8 bits, sRGB: what the command writes and what Save Video asks for by default."""
