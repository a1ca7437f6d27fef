"""The GPU tests, run before a GPU bench measures anything: figures from a CUDA path that fails its parity tests
would describe a broken path, so a failure stops the bench with the tests' own output."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
GPU_TESTS = ("tests/test_gpu.py",)


class GpuTestsFailed(SystemExit):
    """The tests failed (or could not run): the bench stops with their exit status, after their output."""


def run_tests(paths: Sequence[str] = GPU_TESTS, cwd: Path = REPO, require_run: bool = False) -> dict:
    """Run pytest on ``paths`` in a child process; {"passed", "skipped", "failed", "errors", "command"} when none
    fails. ``require_run``: skipped tests count as failed too (a CUDA bench whose GPU tests skip did not check its
    path). Raises ``GpuTestsFailed`` with pytest's exit status after printing its output otherwise."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.xml"
        command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", f"--junitxml={report}",
                   *paths]
        # the GPU tests need no pytest plugin, and loading every installed one costs a second
        proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                              env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
        counts = _counts(report) if report.exists() else None
    shown = " ".join(["python", "-m", "pytest", *paths])
    if proc.returncode != 0 or counts is None or (require_run and counts["skipped"]):
        print(proc.stdout[-20000:] + proc.stderr[-5000:], file=sys.stderr)
        why = "skipped on a CUDA run" if proc.returncode == 0 and counts else f"failed (exit status {proc.returncode})"
        print(f"the GPU tests ({shown}) {why}: nothing was measured", file=sys.stderr)
        raise GpuTestsFailed(proc.returncode or 1)
    return {**counts, "command": shown}


def _counts(report: Path) -> dict:
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
    failed, errors = int(suite.get("failures", 0)), int(suite.get("errors", 0))
    return {"passed": total - skipped - failed - errors, "skipped": skipped, "failed": failed, "errors": errors}
