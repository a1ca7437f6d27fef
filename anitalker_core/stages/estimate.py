"""How long a run will take and how much memory it needs, known before the long work starts.

A run is a few stages (speech features, sampling, rendering with its output: upscale, paste back, encoding),
each an object in this package that first estimates itself and then runs, going on from its own warm-up.
``estimate()`` times a short warm-up on the real device at the run's own sizes and returns a ``Step``: time by
part, the memory it needs at its peak (what the warm-up's tensors took, scaled, plus what grows with the clip),
and what it leaves for the next step. ``run_estimate`` adds the steps up against what the process holds and
the machine has available; a run that would not fit is refused at once with what to change (``ResourceError``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import torch

from ..errors import ResourceError
from ..memory import device_available, device_in_use, host_available, resident_memory

MARGIN = 0.15
"""A run fits when the memory it adds, plus 15 %, stays within what is available: room for allocator slack and
for the estimate's own error (measured in README *Know before you wait*)."""

STREAM = ("use Render Video instead of an IMAGE batch: it streams the frames into the file, so memory stays that "
          "of one batch whatever the length (headless: --frames-dir for image files)")
SHORTER = "use a shorter clip, or split the audio and animate the parts one after another"
SMALLER_BATCH = "use a smaller batch size (batch_size on the node, --batch-size headless)"
LOWER_PRECISION = "render in fp16 or bf16 (the renderer loader's precision, --precision headless)"
FEWER_TAKES = "sample fewer takes at once, or a shorter clip"


@dataclass(frozen=True)
class Need:
    """One item of memory a step needs beyond what the process held before the run; ``advice`` says what to
    change when this item is what does not fit."""

    what: str
    nbytes: int
    advice: str


@dataclass(frozen=True)
class Part:
    """Time of one part of a step, e.g. ("rendering", 130.0, "0.52 s/frame")."""

    name: str
    seconds: float
    detail: str = ""


@dataclass(frozen=True)
class Step:
    """One stage of a run: its time, the memory it needs at its peak (host RAM and, on a GPU, device memory), and
    what it leaves for the next step (``keeps``: e.g. the speech features, which sampling reads)."""

    parts: tuple[Part, ...]
    host: tuple[Need, ...] = ()
    device: tuple[Need, ...] = ()
    keeps: tuple[Need, ...] = ()
    seconds: Optional[float] = None
    """The step's wall time when its parts overlap (a GPU renders while the CPU encodes); else their sum."""

    @property
    def wall_s(self) -> float:
        return self.seconds if self.seconds is not None else sum(p.seconds for p in self.parts)


@dataclass(frozen=True)
class RunEstimate:
    """Time and peak memory of a run on this device, and whether it fits in the memory available.

    ``host_in_use``/``device_in_use``: what the process holds now; the steps' needs come on top. ``*_available``:
    what the system can still give (None: unknown, and an unknown amount never refuses a run).
    """

    steps: tuple[Step, ...]
    device: str
    host_in_use: int
    host_available: Optional[int]
    device_in_use: int = 0
    device_available: Optional[int] = None

    @property
    def seconds(self) -> float:
        return sum(s.wall_s for s in self.steps)

    def _peak(self, kind: str) -> tuple[Need, ...]:
        """The needs at the run's peak: each step's own plus what the step before keeps for it."""
        best: tuple[Need, ...] = ()
        kept: tuple[Need, ...] = ()
        for step in self.steps:
            needs = (kept if kind == "host" else ()) + getattr(step, kind)
            if sum(n.nbytes for n in needs) >= sum(n.nbytes for n in best):
                best = needs
            kept = step.keeps
        return best

    @property
    def host_needs(self) -> tuple[Need, ...]:
        return self._peak("host")

    @property
    def device_needs(self) -> tuple[Need, ...]:
        return self._peak("device")

    @property
    def host_extra(self) -> int:
        """Bytes of RAM the run adds at its peak."""
        return sum(n.nbytes for n in self.host_needs)

    @property
    def device_extra(self) -> int:
        return sum(n.nbytes for n in self.device_needs)

    @property
    def host_peak(self) -> int:
        return self.host_in_use + self.host_extra

    @property
    def device_peak(self) -> int:
        return self.device_in_use + self.device_extra

    @property
    def fits_host(self) -> bool:
        return self.host_available is None or self.host_extra * (1 + MARGIN) <= self.host_available

    @property
    def fits_device(self) -> bool:
        return self.device_available is None or self.device_extra * (1 + MARGIN) <= self.device_available

    @property
    def fits(self) -> bool:
        return self.fits_host and self.fits_device

    @property
    def device_memory(self) -> str:
        return f"GPU memory ({self.device})" if self.device.startswith("cuda") else f"{self.device} memory"

    def summary(self) -> str:
        """One line for the node and the terminal: time by part, peak memory and what is available."""
        parts = [p for s in self.steps for p in s.parts if p.seconds > 0]
        detail = ", ".join(f"{p.name} {duration(p.seconds)}" + (f" at {p.detail}" if p.detail else "")
                           for p in parts)
        text = f"estimate: about {duration(self.seconds)}" + (f" ({detail})" if len(parts) > 1 or detail else "")
        text += (f"; RAM {size(self.host_peak)} at the peak (+{size(self.host_extra)}), "
                 f"{size(self.host_available) if self.host_available is not None else 'unknown'} available")
        if self.device_available is not None or self.device_extra:
            text += (f"; {self.device_memory} {size(self.device_peak)} at the peak (+{size(self.device_extra)}), "
                     f"{size(self.device_available) if self.device_available is not None else 'unknown'} free")
        return text

    def check(self) -> "RunEstimate":
        """This estimate, or ``ResourceError`` naming the figures and what to change when the run cannot fit."""
        if not self.fits_host:
            raise ResourceError(_refusal("RAM", self.host_needs, self.host_extra, self.host_in_use,
                                         self.host_available))
        if not self.fits_device:
            raise ResourceError(_refusal(self.device_memory, self.device_needs, self.device_extra,
                                         self.device_in_use, self.device_available))
        return self

    def remeasured(self) -> "RunEstimate":
        """The same needs against what is in use and available now (e.g. after the host application made room)."""
        return replace(self, host_in_use=resident_memory(), host_available=host_available(),
                       device_in_use=device_in_use(torch.device(self.device)),
                       device_available=device_available(torch.device(self.device)))


def _refusal(memory: str, needs: Sequence[Need], extra: int, in_use: int, available: Optional[int]) -> str:
    top = sorted(needs, key=lambda n: n.nbytes, reverse=True)
    items = "; ".join(f"{n.what} {size(n.nbytes)}" for n in top[:3])
    return (f"not enough memory for this run: at its peak it needs about {size(extra)} more {memory} than the "
            f"{size(in_use)} in use ({items}), but {size(available or 0)} is available (with a {MARGIN:.0%} margin). "
            f"To fit, {top[0].advice}; or free memory by closing other programs.")


def duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s} s" if s else f"{m} min"
    h, m = divmod(m, 60)
    return f"{h} h {m} min"


def size(nbytes: float) -> str:
    if nbytes >= 1e9:
        return f"{nbytes / 1e9:.1f} GB"
    return f"{nbytes / 1e6:.0f} MB" if nbytes >= 1e6 else f"{nbytes / 1e3:.0f} kB"


def measured_needs(device: torch.device, what: str, host_bytes: float, device_bytes: float,
              advice: str) -> dict[str, tuple[Need, ...]]:
    """Working memory a warm-up measured: host RAM (all of it on a CPU) and, on a GPU, device memory."""
    needs = {"host": (Need(what, int(host_bytes), advice),)} if host_bytes > 0 else {}
    if device.type == "cuda":
        needs["device"] = (Need(what, int(device_bytes), advice),)
    return needs


def merge_needs(*groups: dict[str, tuple[Need, ...]]) -> dict[str, tuple[Need, ...]]:
    out: dict[str, tuple[Need, ...]] = {}
    for group in groups:
        for kind, needs in group.items():
            out[kind] = out.get(kind, ()) + needs
    return out




def image_bytes(frames: int, width: int, height: int) -> int:
    """Size of a ComfyUI IMAGE batch: float32 RGB."""
    return frames * width * height * 3 * 4


def run_estimate(steps: Sequence[Step], device: torch.device) -> RunEstimate:
    """The steps' estimate against what the process holds and the machine has available now, after the warm-ups:
    memory the warm-ups freed mostly stays with the process, ready for the run to reuse, and model weights read
    from mapped files become resident only once the warm-ups touch them."""
    device = torch.device(device)
    return RunEstimate(steps=tuple(steps), device=str(device), host_in_use=resident_memory(),
                       host_available=host_available(), device_in_use=device_in_use(device),
                       device_available=device_available(device))
