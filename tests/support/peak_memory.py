"""The process's peak resident memory since a mark, to compare an estimate with the run it predicts.

On Linux the kernel keeps the peak itself (VmHWM, reset through clear_refs): exact. Elsewhere a thread samples
the resident size with psutil every millisecond, which can miss a spike shorter than that.

Shared by tests/test_estimate.py, tests/test_faults.py, tests/test_audio.py and bench/estimate.py.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")
KERNEL = STATUS.is_file() and CLEAR_REFS.exists()


class _Sampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="peak-rss-sampler", daemon=True)
        import psutil

        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self.lock = threading.Lock()

    def run(self) -> None:
        stop = threading.Event()
        while not stop.wait(0.001):
            rss = self.process.memory_info().rss
            with self.lock:
                self.peak = max(self.peak, rss)

    def reset(self) -> None:
        with self.lock:
            self.peak = self.process.memory_info().rss

    def read(self) -> int:
        rss = self.process.memory_info().rss
        with self.lock:
            self.peak = max(self.peak, rss)
            return self.peak


_sampler: _Sampler | None = None


def _started_sampler() -> _Sampler:
    global _sampler
    if _sampler is None:
        _sampler = _Sampler()
        _sampler.start()
    return _sampler


def reset_peak() -> None:
    """Start a new peak at the memory held now."""
    if KERNEL:
        CLEAR_REFS.write_text("5")  # resets VmHWM to the current resident size
    else:
        _started_sampler().reset()


def peak_rss() -> int:
    """The most RAM in bytes the process has held since ``reset_peak``."""
    if KERNEL:
        return int(re.search(r"VmHWM:\s+(\d+) kB", STATUS.read_text()).group(1)) * 1024
    return _started_sampler().read()
