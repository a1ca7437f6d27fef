"""Measuring a call on a device, and the memory a machine has left.

``measure`` times one call and takes the peak of the memory its tensors took, on the host and on the device:
``TensorPeak`` counts the tensors operators allocate as they come and go (PyTorch's ``TorchDispatchMode`` hook, the
one its own ``FlopCounterMode`` uses). The CPU allocator keeps no statistics, and CUDA's peak statistics belong to
the whole process (resetting them inside a shared server would corrupt another node's figures), so both are
counted this way. What is left:
psutil or Linux's MemAvailable, capped by a container's memory limit, and a GPU's free memory plus PyTorch's cache.
"""

from __future__ import annotations

import os
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

CGROUP_LIMITS = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat",
                  "inactive_file"),
                 ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes",
                  "/sys/fs/cgroup/memory/memory.stat", "total_inactive_file"))
"""(limit, usage, stat, reclaimable cache key) of a container's memory limit, cgroup v2 then v1."""


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            text = f.read().strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def _container_room() -> Optional[int]:
    """Bytes left under the container's memory limit (usage minus reclaimable page cache), None without a limit."""
    for limit_file, usage_file, stat_file, cache_key in CGROUP_LIMITS:
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is None or usage is None or limit >= 2**60:
            continue
        cache = 0
        try:
            with open(stat_file) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == cache_key and value.strip().isdigit():
                        cache = int(value)
        except OSError:
            pass
        return max(limit - usage + cache, 0)
    return None


def host_available() -> Optional[int]:
    """RAM the system can give without swapping: psutil, else Linux's MemAvailable (and a container's limit);
    None where neither is known."""
    found: Optional[int] = None
    try:
        import psutil

        found = int(psutil.virtual_memory().available)
    except ImportError:
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        found = int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            found = None
    room = _container_room()
    return room if found is None else (found if room is None else min(found, room))


def resident_memory() -> int:
    """Bytes of RAM this process holds now (0 when unknown)."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0


def device_available(device: torch.device) -> Optional[int]:
    """Free memory on a CUDA device, counting what PyTorch has cached but not in use; None elsewhere (the CPU's is
    the host's)."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def device_in_use(device: torch.device) -> int:
    """Bytes PyTorch has allocated on a CUDA device now; 0 elsewhere."""
    return int(torch.cuda.memory_allocated(device)) if device.type == "cuda" else 0


class TensorPeak(TorchDispatchMode):
    """Counts the tensors that operators allocate while it is active, per kind of memory (host, device), and keeps
    each peak total in bytes. Outputs that share an input's storage (views, in-place and ``out=`` operations)
    allocate nothing and are not counted; neither are a library's internal workspaces (the estimate's margin is
    for those)."""

    def __init__(self) -> None:
        super().__init__()
        self.now = {"host": 0, "device": 0}
        self.peak = {"host": 0, "device": 0}
        self._live: dict[tuple[str, int], list[int]] = {}  # (kind, storage address) -> [bytes, tensors alive]

    @staticmethod
    def _kind(t: torch.Tensor) -> str:
        return "host" if t.device.type == "cpu" else "device"

    def _release(self, key: tuple[str, int]) -> None:
        entry = self._live.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                self.now[key[0]] -= entry[0]
                del self._live[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {(self._kind(t), t.untyped_storage().data_ptr()) for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = (self._kind(t), storage.data_ptr())
            if key in self._live:
                self._live[key][1] += 1
            elif key in inputs or storage.nbytes() == 0:
                continue
            else:
                self._live[key] = [storage.nbytes(), 1]
                self.now[key[0]] += storage.nbytes()
                self.peak[key[0]] = max(self.peak[key[0]], self.now[key[0]])
            weakref.finalize(t, self._release, key)
        return out


@dataclass(frozen=True)
class Measured:
    """One timed call: its result, wall seconds, and the peak bytes of the tensors it made (host RAM, device)."""

    value: Any
    seconds: float
    host_bytes: int
    device_bytes: int


def measure(fn: Callable[[], Any], device: torch.device, memory: bool = True) -> Measured:
    """Run ``fn`` once on ``device``; ``memory=False`` times it without counting tensors (no overhead)."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    tracker = TensorPeak() if memory else None
    start = time.perf_counter()
    if tracker is not None:
        with tracker:
            value = fn()
    else:
        value = fn()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    if tracker is None:
        return Measured(value, seconds, 0, 0)
    return Measured(value, seconds, tracker.peak["host"], tracker.peak["device"])
