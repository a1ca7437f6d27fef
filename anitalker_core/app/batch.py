"""Many clips from one manifest: rows checked up front (``manifest``), animated by workers that keep their models
loaded (``workers``), recorded in a report (``report``), resumable after a crash: rows whose mp4 is already
complete are skipped and the others run again."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable

from ..options import ClipOptions
from ..models.loading import weight_files
from .manifest import Row, read_manifest
from .report import DONE, FAILED, REPORT_NAME, SKIPPED, Report, RowResult, Summary, output_complete, report_line
from .workers import BatchSettings, results

__all__ = ["BatchSettings", "Summary", "run_batch"]


def _fetch_weights(rows: Iterable[Row], settings: BatchSettings) -> None:
    """Every weight file the rows need, present before any worker starts: downloads happen once, here, and
    missing weights stop the batch now instead of failing every row."""
    for variant in sorted({r.options.variant for r in rows}):
        weight_files(settings.models_dir, variant, allow_download=settings.allow_download)


def run_batch(manifest: Path, defaults: ClipOptions, settings: BatchSettings) -> Summary:
    """Animate every row of ``manifest`` into ``settings.out_dir``; rows whose mp4 is complete are skipped.
    ``defaults``: the clip options a row's empty cells take (the command line's)."""
    from tqdm.auto import tqdm

    out_dir = Path(settings.out_dir).resolve()
    rows = read_manifest(manifest, defaults, out_dir)
    ready = [r for r in rows if r.options is not None]
    todo = [r for r in ready if not output_complete(r.out)]
    todo_numbers = {r.number for r in todo}
    running = results(todo, settings)  # nothing starts yet: a missing ray fails before the report is touched
    if todo:
        _fetch_weights(todo, settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_number = {r.number: r for r in rows}
    counts = {DONE: 0, SKIPPED: 0, FAILED: 0}
    report = Report(out_dir / REPORT_NAME, rows)
    bar = tqdm(total=len(rows), desc="rows", unit="row", position=0)

    def record(result: RowResult) -> None:
        row = by_number[result.number]
        report.add(report_line(row, result))
        counts[result.status] += 1
        if result.status == FAILED:
            bar.write(f"row {row.number} failed: {result.error}", file=sys.stderr)
        bar.update(1)

    try:
        for row in rows:
            if row.options is None:
                record(RowResult(row.number, FAILED, row.error))
            elif row.number not in todo_numbers:
                record(RowResult(row.number, SKIPPED, notes="the output exists and is complete"))
        for result in running if todo else ():
            record(result)
    finally:
        bar.close()
        report.close()
    return Summary(counts[DONE], counts[SKIPPED], counts[FAILED], report.path)
