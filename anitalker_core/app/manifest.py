"""A batch manifest: a CSV (header row) or JSON Lines file -> one ``Row`` per clip, checked before any work.

Columns are ``portrait`` (or ``video``: a row that dubs footage), ``audio``, optional ``out`` and the clip options
by name, each cell parsed by that
option's own parser in ``ClipOptions`` (so ``steps`` in a row means exactly ``--steps``, and a new option works
in manifests without a line here). An unknown column, or two rows writing one file, refuse the whole manifest
before any work: both are mistakes in the manifest's layout, not in one clip. A bad value in a row
(``steps=abc``) fails that row only.
"""

from __future__ import annotations

import csv
import difflib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence

from ..errors import ManifestError
from ..options import COLUMNS, ClipOptions, OptionError

INPUT_COLUMNS = ("portrait", "audio", "out")
EXTRA = "\0extra"
"""Where the CSV reader puts cells beyond the header's columns."""


@dataclass(frozen=True)
class Row:
    """One clip of the manifest. ``options`` is what the clip runs with (None, with ``error`` saying why, when
    the row cannot run as written); ``given`` holds its own option cells as written."""

    number: int
    portrait: Optional[Path]
    audio: Optional[Path]
    out: Optional[Path]
    given: dict = field(default_factory=dict)
    options: Optional[ClipOptions] = None
    error: str = ""


def _column(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _records(path: Path) -> list[tuple[int, object]]:
    """(row number, {column: value}) per row; a JSON line that is not an object gives its error text instead."""
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets save CSVs with a byte-order mark
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"could not read manifest {path}: {exc}") from exc
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines(), restkey=EXTRA)
        if not reader.fieldnames:
            raise ManifestError(f"manifest {path} is empty; its first line names the columns: portrait,audio,...")
        names = [_column(n) for n in reader.fieldnames if n.strip()]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ManifestError(f"manifest {path} has the column(s) {', '.join(twice)} more than once")
        return list(enumerate(reader, start=1))
    if suffix in (".jsonl", ".ndjson"):
        records: list[tuple[int, object]] = []
        for line in (ln for ln in text.splitlines() if ln.strip()):
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    record = f"not a JSON object but {type(record).__name__}"
            except json.JSONDecodeError as exc:
                record = f"not a JSON object ({exc.msg} at column {exc.colno})"
            records.append((len(records) + 1, record))
        return records
    raise ManifestError(f"manifest {path} must be a .csv (with a header row) or a .jsonl file (one JSON object "
                        f"a line), not {suffix or 'a file without a suffix'}")


def _check_columns(records: list[tuple[int, object]], allowed: Sequence[str], path: Path) -> None:
    names = {_column(k) for _, r in records if isinstance(r, dict) for k in r if k != EXTRA}
    unknown = sorted(names - set(allowed) - {""})  # "": a spreadsheet's trailing comma; a value there fails its row
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, allowed, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ManifestError(
            f"manifest {path} has unknown column(s) {', '.join(hints)}; columns are portrait, audio, out and the "
            f"clip options {', '.join(a for a in allowed if a not in INPUT_COLUMNS)}. Options of the whole run "
            f"(--models, --device, --precision, --workers, ...) go on the command line")
    if not records:
        raise ManifestError(f"manifest {path} has no rows")


def _text(value: object) -> Optional[str]:
    """A cell as the command line would spell it; None for an empty one (the default applies)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        raise ManifestError(f"a value must be a single text or number, not {json.dumps(value)}")
    text = str(value).strip()
    return text or None


def _local(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else base / path


def _with_paths_from(options: ClipOptions, base: Path) -> ClipOptions:
    """Relative paths among the options, taken from ``base`` (the manifest's folder for a row's cells)."""
    return replace(options, **{name: _local(value, base).resolve() for name, value in vars(options).items()
                               if isinstance(value, Path)})


def _parse_row(number: int, record: object, defaults: ClipOptions, manifest_dir: Path, out_dir: Path) -> Row:
    if not isinstance(record, dict):
        return Row(number, None, None, None, error=f"row {number}: {record}")
    try:
        cells = {_column(k): _text(v) for k, v in record.items() if k != EXTRA}
    except ManifestError as exc:
        return Row(number, None, None, None, error=f"row {number}: {exc}")
    cells = {k: v for k, v in cells.items() if v is not None}
    if any(str(c).strip() for c in record.get(EXTRA) or ()) or "" in cells:
        return Row(number, None, None, None, error=f"row {number} has a cell outside the named columns")
    portrait = _local(Path(cells["portrait"]), manifest_dir).resolve() if "portrait" in cells else None
    audio = _local(Path(cells["audio"]), manifest_dir).resolve() if "audio" in cells else None
    footage = _local(Path(cells["video"]), manifest_dir).resolve() if "video" in cells else None
    given = {k: v for k, v in cells.items() if k not in INPUT_COLUMNS}
    out = None
    try:
        if portrait is not None and footage is not None:
            raise ManifestError(f"row {number} has a portrait and a video: a row animates a portrait, or dubs a video "
                                "(the face comes from the video); leave one cell empty")
        if (portrait is None and footage is None) or audio is None:
            missing = "audio" if audio is None and (portrait or footage) else "portrait (or video, to dub it)"
            raise ManifestError(f"row {number} has no {missing}")
        out = _output_path(cells.get("out"), portrait or footage, audio, out_dir)
        own = _with_paths_from(ClipOptions().with_cells(given), manifest_dir)
        options = replace(defaults, **{name: getattr(own, name) for name in given})
    except (ManifestError, OptionError) as exc:
        return Row(number, portrait, audio, out, given, error=str(exc))
    options = replace(options, portrait=portrait, audio=audio, out=out, frames_dir=None, save_motion=None)
    return Row(number, portrait, audio, out, given, options)


def _output_path(name: Optional[str], portrait: Path, audio: Path, out_dir: Path) -> Path:
    if name is None:
        return out_dir / f"{portrait.stem}_{audio.stem}.mp4"
    out = Path(name)
    if out.is_absolute() or ".." in out.parts:
        raise ManifestError(f"out {name!r} must be a file name inside the output folder (no absolute path, no ..)")
    if not out.suffix:
        out = out.with_suffix(".mp4")
    if out.suffix.lower() != ".mp4":
        raise ManifestError(f"out {name!r} must be an .mp4 file name")
    return out_dir / out


def read_manifest(path: Path, defaults: ClipOptions, out_dir: Path) -> list[Row]:
    """The manifest's rows, each cell over ``defaults`` (the command line's values, whose relative paths are
    from the working directory). Refuses unknown columns and two rows writing one file; a row that cannot
    run comes back with its ``error``."""
    path = Path(path)
    records = _records(path)
    _check_columns(records, COLUMNS, path)
    defaults = _with_paths_from(defaults, Path.cwd())
    out_dir = Path(out_dir).resolve()
    rows = [_parse_row(n, r, defaults, path.parent.resolve(), out_dir) for n, r in records]
    seen: dict[str, Row] = {}
    for row in rows:
        if row.out is None:
            continue
        key = row.out.as_posix().casefold()
        if key in seen:
            raise ManifestError(
                f"rows {seen[key].number} and {row.number} of {path} both write {row.out.name}; give each row its "
                f"own out file name (two takes of one line need an out column)")
        seen[key] = row
    return rows
