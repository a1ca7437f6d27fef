"""Measuring a call on a device: its time and the peak memory of the tensors it made.

``measure`` times one call and takes the peak of the memory its tensors took, on the host and on the device:
``TensorPeak`` counts the tensors operators allocate as they come and go (PyTorch's ``TorchDispatchMode`` hook, the
one its own ``FlopCounterMode`` uses). The CPU allocator keeps no statistics, and CUDA's peak statistics belong to
the whole process (resetting them inside a shared server would corrupt another node's figures), so both are
counted this way. What a machine has left is ``memory``'s.

``clock`` is the one time source of every estimate: tests replace it to judge the estimate's arithmetic without
reading the machine's speed.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

clock: Callable[[], float] = time.perf_counter
"""Seconds from an arbitrary origin (what ``measure`` times calls with)."""


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
    start = clock()
    if tracker is not None:
        with tracker:
            value = fn()
    else:
        value = fn()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = clock() - start
    if tracker is None:
        return Measured(value, seconds, 0, 0)
    return Measured(value, seconds, tracker.peak["host"], tracker.peak["device"])
