"""Where the models run and in which precision: one policy that the nodes and the command both call.

Choices (measured, see README *Speed and memory*):

- device ``auto``: the device the host application computes on (ComfyUI's choice), else a CUDA GPU if there is
  one, else the CPU.
- render precision ``auto``: the fastest precision whose error stays near 1/255 per pixel. On CUDA that is fp16
  (about 1.3x fp32's speed on an H100, mean error 1.1/255; bf16 is as fast with 2.9/255). On a CPU with bf16
  instructions (AVX512-BF16 or AMX) it is bf16 (about 1.7x faster, mean error 1.1/255: the same error that
  fp16 costs on a GPU, for a larger gain). Elsewhere fp32: CPUs without those instructions emulate bf16 more
  slowly than fp32, and no CPU has fast fp16 convolutions.
- the sampler always runs in fp32: it costs little next to rendering, and fifty denoising steps would compound
  rounding into a different motion.

Only the styled convolutions of the renderer run in low precision (see ``warp_decoder``); flows, warps and
colours stay fp32.

On the host, freed memory is kept for reuse (``keep_freed_memory``): glibc hands every large block back to the
kernel when it is freed, so each of the renderer's tensors would come back as fresh zero-filled pages, and on a
2-core CPU those page faults cost a quarter of a render (0.25 -> 0.18 s/frame in fp32, README *Speed and memory*).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
from dataclasses import dataclass
from typing import Optional, Union

import torch

from .errors import AniTalkerError
from .memory import device_available, host_available

log = logging.getLogger(__name__)

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PRECISION_CHOICES: tuple[str, ...] = ("auto",) + tuple(PRECISIONS)
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")
SAMPLER_PRECISION = "fp32"

CHANNELS_LAST = False
"""Channels-last (NHWC) layouts for the renderer on CUDA. Measured on an H100 with no gain (the convolutions are
a small share of the time, the rest is memory-bound), so off; the loader's ``channels_last`` turns it on."""

CPU_BATCH, CUDA_BATCH = 2, 64
"""Frames rendered per batch: a CPU is compute-bound already at 2 frames (and 2 keeps Cancel under a second);
a GPU wants dozens."""
CUDA_FRAME_BYTES = 80 * 10**6
"""Memory one frame of a render batch holds while it renders: 61-82 MB by tensor counting on the CPU (fp32 and bf16
autocast, batches of 1 to 4 frames). ``python -m bench.gpu`` measures the GPU's own figure (render, by_batch)."""
CUDA_BATCH_SHARE = 0.5
"""The share of a GPU's available memory one render batch may take. The rest is for what runs beside it: the face
model's batch (2.3 GB of tensors for four GFPGAN faces in fp32), paste back, and the libraries' workspaces, which
tensors do not show."""


KEEP_FREED_BYTES = 512 * 2**20
"""Freed memory glibc may keep for reuse, and the largest block it serves from its own heap (larger ones still
come from and go back to the kernel at once): room for the renderer's working set, little next to the weights."""
KEEP_FREED_MEMORY_ENV = "ANITALKER_KEEP_FREED_MEMORY"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Let the C allocator keep up to ``KEEP_FREED_BYTES`` of freed memory for reuse instead of returning it to
    the kernel, process-wide, once. True when in force: glibc only (elsewhere, or with
    ANITALKER_KEEP_FREED_MEMORY=0, nothing changes)."""
    if os.environ.get(KEEP_FREED_MEMORY_ENV, "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # the mmap threshold first: setting it also turns off glibc's own adjustment of both thresholds
    kept = bool(mallopt(_M_MMAP_THRESHOLD, KEEP_FREED_BYTES // 2) and mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES))
    if kept:
        log.info("AniTalker: freed host memory (up to %d MB) is kept for reuse, which makes CPU work faster; "
                 "%s=0 turns this off", KEEP_FREED_BYTES // 2**20, KEEP_FREED_MEMORY_ENV)
    return kept


def cores_per_process(processes: int = 1) -> int:
    """Each of ``processes`` processes' share of the CPU cores this process may run on (at least one): the torch
    threads one of them should use, since more threads than free cores only wait on each other."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this OS
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, processes))


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 math (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cuda_has_bf16(device: torch.device) -> bool:
    """Whether a CUDA GPU computes bf16 natively (compute capability 8.0, Ampere, and later), where bf16 autocast
    pays; earlier cards emulate it."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    return torch.cuda.get_device_capability(device) >= (8, 0)


def resolve_device(choice: Union[str, torch.device] = "auto", host: Optional[torch.device] = None) -> torch.device:
    """A device choice -> the torch device. ``auto`` is ``host`` (the host application's device) when given,
    else CUDA when present, else the CPU; a CUDA choice without a GPU is an error, not a silent CPU run."""
    name = str(choice)
    if name == "auto":
        if host is not None:
            return torch.device(host)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise AniTalkerError(f"device {name!r} is not a device name; use auto, cpu, cuda, cuda:1 or mps") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AniTalkerError(f"device {name!r} was chosen but no CUDA GPU is available; choose 'auto' or 'cpu'")
    return device


@dataclass(frozen=True)
class Precision:
    """A resolved precision and why it was chosen (shown to the user)."""

    name: str
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        return PRECISIONS[self.name]


def render_precision(choice: str, device: torch.device) -> Precision:
    """The renderer's precision for a choice (auto, fp32, fp16, bf16) on a device; see the module docstring."""
    if choice not in PRECISION_CHOICES:
        raise AniTalkerError(f"precision {choice!r} is not one of {', '.join(PRECISION_CHOICES)}")
    device = torch.device(device)
    if device.type == "cuda":
        return Precision("fp16", "auto: fp16 on CUDA GPUs") if choice == "auto" else Precision(choice, "chosen")
    if device.type != "cpu":
        return Precision("fp32", f"low precision is used on CUDA and CPUs only, not on {device.type}")
    if choice == "auto":
        if cpu_has_bf16():
            return Precision("bf16", "auto: this CPU has bf16 instructions")
        return Precision("fp32", "auto: this CPU has no bf16 instructions")
    if choice == "bf16" and not cpu_has_bf16():
        return Precision("fp32", "bf16 chosen, but this CPU has no bf16 instructions, where bf16 is slower than fp32")
    if choice == "fp16":
        return Precision("fp32", "fp16 chosen, but CPUs have no fast fp16 convolutions")
    return Precision(choice, "chosen")


def describe(device: torch.device, render: Precision) -> str:
    """One line for people: where things run and in which precision."""
    return f"device: {device}, render precision: {render.name} ({render.reason}), sampler: {SAMPLER_PRECISION}"


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Low-precision autocast where it pays (fp16/bf16 on CUDA, bf16 on the CPU); plain fp32 elsewhere."""
    if device.type == "cuda" and dtype in (torch.float16, torch.bfloat16):
        return torch.autocast("cuda", dtype=dtype)
    if device.type == "cpu" and dtype == torch.bfloat16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


ATTENTION_BYTES = 256 * 2**20
"""Attention scores one block of queries may hold in the motion generator's conformers: a clip whose scores fit
(about 80 s for one take) runs as one block, the official computation as it is; a longer one in blocks of queries,
so sampling memory grows with the clip's length, not with its square."""


def attention_budget(device: torch.device) -> int:
    """Bytes of attention scores a block of queries may take on ``device``: ``ATTENTION_BYTES``, or a quarter of
    the memory left when that is less (never under 1 MB)."""
    device = torch.device(device)
    free = device_available(device) if device.type == "cuda" else host_available() if device.type == "cpu" else None
    return ATTENTION_BYTES if free is None else max(min(ATTENTION_BYTES, free // 4), 2**20)


def default_batch_size(device: torch.device, available: Optional[int] = None) -> int:
    """Frames rendered at once when the user leaves it to us: ``CPU_BATCH`` on a CPU; on a GPU ``CUDA_BATCH``, or
    fewer where that many frames (``CUDA_FRAME_BYTES`` each) would take more than ``CUDA_BATCH_SHARE`` of the memory
    ``available`` (default: what the GPU has available now). A card of 80 GB renders 64 frames at once; an 8 GB card
    that holds the models of a 1080p run with face restoration (2.1 GB) beside CUDA's own (about 0.5 GB) has about
    5.9 GB available and renders 36 (2.9 GB), so that run keeps within the card."""
    if device.type != "cuda":
        return CPU_BATCH
    if available is None and torch.cuda.is_available():
        available = device_available(device)
    if available is None:
        return CUDA_BATCH
    return max(1, min(CUDA_BATCH, int(available * CUDA_BATCH_SHARE) // CUDA_FRAME_BYTES))
