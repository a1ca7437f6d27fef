"""The process's peak resident memory since a mark (Linux), to compare an estimate with the run it predicts.

Shared by tests/test_estimate.py and bench/estimate.py.
"""

from __future__ import annotations

import re
from pathlib import Path

STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def available() -> bool:
    return STATUS.is_file() and CLEAR_REFS.exists()


def reset_peak() -> None:
    """Start a new peak at the memory held now (writing 5 to clear_refs resets VmHWM)."""
    CLEAR_REFS.write_text("5")


def peak_rss() -> int:
    """VmHWM in bytes: the most RAM the process has held since it started or since ``reset_peak``."""
    return int(re.search(r"VmHWM:\s+(\d+) kB", STATUS.read_text()).group(1)) * 1024
