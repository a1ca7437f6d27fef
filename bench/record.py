"""Every bench run keeps its raw result as JSON under bench/results/, so each figure in the README can be traced
to the command, the commit and the machine that produced it."""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=RESULTS.parent, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=RESULTS.parent,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_description(device: str = "cpu") -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def peak_rss_mb() -> float:
    """The most RAM this process has held (ru_maxrss, kB on Linux), in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def save(name: str, figures: dict, device: str = "cpu", module: Optional[str] = None,
         argv: Optional[Sequence[str]] = None, folder: Optional[Path] = None) -> Path:
    """Write bench/results/<name>-<UTC timestamp>.json (or into ``folder``) with the command line, commit and device.
    The command is this process's, or ``python -m MODULE ARGV`` for a bench whose ``main`` was called in-process."""
    folder = RESULTS if folder is None else Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)  # run as ``python -m bench.x``: say so, not the file's full path
    if module is not None:
        command = ["python", "-m", module]
    else:
        command = ["python", "-m", spec.name] if spec is not None else ["python", sys.argv[0]]
    given = list(sys.argv[1:] if argv is None else argv)
    record = {"command": " ".join(command + given), "commit": commit(), "device": device_description(device),
              "torch": torch.__version__, "date": now.isoformat(timespec="seconds"), "figures": figures}
    path = folder / f"{name}-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    shown = path.relative_to(RESULTS.parent.parent) if path.is_relative_to(RESULTS.parent.parent) else path
    print(f"wrote {shown}", file=sys.stderr)
    return path
