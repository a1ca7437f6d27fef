"""What a batch did: one result per row, kept in ``DIR/report.jsonl`` as it goes, and the run's counts."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from .manifest import Row

REPORT_NAME = "report.jsonl"
DONE, FAILED, SKIPPED = "done", "failed", "skipped"


@dataclass(frozen=True)
class RowResult:
    number: int
    status: str
    error: str = ""
    seconds: float = 0.0
    notes: str = ""
    traceback: str = ""


@dataclass(frozen=True)
class Summary:
    done: int
    skipped: int
    failed: int
    report: Path

    def line(self) -> str:
        return f"{self.done} done, {self.skipped} skipped, {self.failed} failed (see {self.report})"


def output_complete(path: Path) -> bool:
    """Whether a row's mp4 is finished: it exists under its final name (the writer renames it there only when
    complete) and opens with a video stream that has frames."""
    import av

    if not path.is_file():
        return False
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.video) and container.streams.video[0].frames > 0
    except (av.error.FFmpegError, OSError):
        return False


def report_line(row: Row, result: RowResult) -> dict:
    line = {"row": row.number, "portrait": _str(row.portrait), "audio": _str(row.audio), "options": row.given,
            "out": _str(row.out), "status": result.status, "error": result.error or None,
            "seconds": round(result.seconds, 2), "notes": result.notes}
    if result.traceback:
        line["traceback"] = result.traceback
    return line


def _str(path: Optional[Path]) -> Optional[str]:
    return None if path is None else str(path)


class Report:
    """``DIR/report.jsonl``. During a run each row's line is appended and flushed as the row ends, so a crash
    keeps every line written; at the end the file is rewritten with the latest line of each manifest row, in
    row order (one line per row: a resumed run's lines replace the earlier run's)."""

    def __init__(self, path: Path, rows: Sequence[Row]) -> None:
        self.path = Path(path)
        self._outs = {r.number: _str(r.out) for r in rows}
        if self.path.is_file() and self.path.stat().st_size:
            with self.path.open("rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"  # a crash in the middle of a line
        else:
            torn = False
        self._file = self.path.open("a", encoding="utf-8")
        if torn:
            self._file.write("\n")

    def add(self, line: dict) -> None:
        self._file.write(json.dumps(line) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
        latest: dict[int, str] = {}
        for text in self.path.read_text(encoding="utf-8").splitlines():
            try:
                line = json.loads(text)
                number = line["row"]
            except (json.JSONDecodeError, TypeError, KeyError):
                continue
            if number in self._outs and line.get("out") == self._outs[number]:
                latest[number] = text
        partial = self.path.with_name(f".{self.path.name}.partial")
        partial.write_text("".join(latest[n] + "\n" for n in sorted(latest)), encoding="utf-8")
        partial.replace(self.path)
