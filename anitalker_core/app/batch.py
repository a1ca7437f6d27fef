"""Many clips from one manifest: rows checked up front, animated by workers that keep their models loaded,
recorded in a report, resumable after a crash.

- ``read_manifest``: a CSV (header row) or JSON Lines file -> ``Row`` records. Columns are ``portrait``,
  ``audio``, optional ``out`` and the ``animate`` command's clip options by name, parsed by that command's
  own argument parser (so ``steps`` in a row means exactly ``--steps``, and a new option works in manifests
  without a line here). An unknown column, or two rows writing one file, refuse the whole manifest before any
  work: both are mistakes in the manifest's layout, not in one clip. A bad value in a row (``steps=abc``)
  fails that row only.
- ``RowWorker``: animates rows one after another with the models it loaded for the first (``headless``).
  The same class runs in this process, in each local worker process and as a Ray actor.
- ``Report``: ``DIR/report.jsonl``, one JSON line per row.
- ``run_batch``: skips rows whose mp4 is already complete, runs the rest in-process, in a local process
  pool or on Ray, and returns the counts.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import json
import math
import os
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import torch

from ..device_policy import keep_freed_memory
from ..errors import AniTalkerError, ManifestError
from .headless import LoadedModels, animate_clip, tqdm_progress, weight_files

REPORT_NAME = "report.jsonl"
INPUT_COLUMNS = ("portrait", "audio", "out")
EXTRA = "\0extra"
"""Where the CSV reader puts cells beyond the header's columns."""
DONE, FAILED, SKIPPED = "done", "failed", "skipped"
BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
RAY_RESTARTS = 2
"""How often Ray restarts a lost worker actor, and retries the row it was animating, before the row fails."""


@dataclass(frozen=True)
class Row:
    """One clip of the manifest. ``options`` is the ``animate`` namespace the clip runs with (None, with
    ``error`` saying why, when the row cannot run as written); ``given`` holds its own cells as written."""

    number: int
    portrait: Optional[Path]
    audio: Optional[Path]
    out: Optional[Path]
    given: dict = field(default_factory=dict)
    options: Optional[argparse.Namespace] = None
    error: str = ""


@dataclass(frozen=True)
class RowResult:
    number: int
    status: str
    error: str = ""
    seconds: float = 0.0
    notes: str = ""
    traceback: str = ""


@dataclass(frozen=True)
class BatchSettings:
    """What holds for every row: where the outputs and weights are, where and how the workers compute."""

    out_dir: Path
    models_dir: Path
    device: str = "auto"
    precision: str = "auto"
    allow_download: bool = True
    workers: Optional[int] = None
    ray_address: Optional[str] = None
    verbose: bool = False


@dataclass(frozen=True)
class Summary:
    done: int
    skipped: int
    failed: int
    report: Path

    def line(self) -> str:
        return f"{self.done} done, {self.skipped} skipped, {self.failed} failed (see {self.report})"


# -- the manifest -------------------------------------------------------------------------------------------

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


def _option_actions(options: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in options._actions if a.option_strings}


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


def _parse_row(number: int, record: object, options: argparse.ArgumentParser, defaults: dict,
               manifest_dir: Path, out_dir: Path) -> Row:
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
    given = {k: v for k, v in cells.items() if k not in INPUT_COLUMNS}
    out = None
    try:
        if portrait is None or audio is None:
            raise ManifestError(f"row {number} has no {'portrait' if portrait is None else 'audio'}")
        out = _output_path(cells.get("out"), portrait, audio, out_dir)
        namespace = _row_options(given, options, defaults, manifest_dir)
    except ManifestError as exc:
        return Row(number, portrait, audio, out, given, error=str(exc))
    namespace.portrait, namespace.audio, namespace.out = portrait, audio, out
    namespace.frames_dir = namespace.save_motion = None
    return Row(number, portrait, audio, out, given, namespace)


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


def _row_options(given: dict, options: argparse.ArgumentParser, defaults: dict,
                 manifest_dir: Path) -> argparse.Namespace:
    """The row's cells over the command line's values, each parsed like its --option."""
    namespace = argparse.Namespace(**defaults)
    actions = _option_actions(options)
    for name, text in given.items():
        action = actions[name]
        if action.nargs == 0 and isinstance(action.const, bool):  # a flag: the column holds its value
            if text.lower() not in BOOLEANS:
                raise ManifestError(f"{name}: expected true/false, yes/no or 1/0, got {text!r}")
            setattr(namespace, name, BOOLEANS[text.lower()])
            continue
        try:
            options.parse_args([f"{action.option_strings[-1]}={text}"], namespace=namespace)
        except argparse.ArgumentError as exc:
            raise ManifestError(f"{name}: {exc.message}") from None
        value = getattr(namespace, name)
        if isinstance(value, Path):
            setattr(namespace, name, _local(value, manifest_dir).resolve())
    return namespace


def read_manifest(path: Path, options: argparse.ArgumentParser, defaults: argparse.Namespace,
                  out_dir: Path) -> list[Row]:
    """The manifest's rows. ``options`` parses the clip options (``animate``'s); ``defaults`` holds their
    command-line values (paths relative to the working directory). Refuses unknown columns and two rows
    writing one file; a row that cannot run comes back with its ``error``."""
    path = Path(path)
    records = _records(path)
    actions = _option_actions(options)
    _check_columns(records, list(INPUT_COLUMNS) + list(actions), path)
    base = {}
    for dest in actions:
        value = getattr(defaults, dest)
        base[dest] = _local(value, Path.cwd()).resolve() if isinstance(value, Path) else value
    out_dir = Path(out_dir).resolve()
    rows = [_parse_row(n, r, options, base, path.parent.resolve(), out_dir) for n, r in records]
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


# -- outputs and the report ---------------------------------------------------------------------------------

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


# -- workers ------------------------------------------------------------------------------------------------

class RowWorker:
    """Animates rows one after another; each model is loaded for the first row that needs it and kept.

    Nothing loads at construction, so starting a worker is cheap and a worker whose rows all fail early
    loads nothing. Every failure becomes a ``failed`` result: the batch goes on with the next row.
    """

    def __init__(self, models_dir: Path, device: str = "auto", precision: str = "auto",
                 threads: Optional[int] = None, progress=None) -> None:
        if threads:
            torch.set_num_threads(threads)
        keep_freed_memory()  # a worker is a process of its own: its allocator is ours to tune
        self.models = LoadedModels(models_dir, device=device, precision=precision, allow_download=False)
        self.progress = progress

    def run(self, row: Row) -> RowResult:
        notes: list[str] = []
        start = time.perf_counter()
        try:
            with torch.inference_mode():
                animate_clip(self.models, row.options, progress=self.progress, say=notes.append)
        except AniTalkerError as exc:
            return RowResult(row.number, FAILED, str(exc), time.perf_counter() - start, "\n".join(notes))
        except Exception as exc:  # a bug or the machine (CUDA out of memory): recorded, and the next row runs
            return RowResult(row.number, FAILED, f"{type(exc).__name__}: {exc}", time.perf_counter() - start,
                             "\n".join(notes), traceback.format_exc())
        return RowResult(row.number, DONE, "", time.perf_counter() - start, "\n".join(notes))


def _cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _in_process(rows: Sequence[Row], settings: BatchSettings) -> Iterator[RowResult]:
    worker = RowWorker(settings.models_dir, settings.device, settings.precision,
                       progress=lambda desc: tqdm_progress(desc, leave=False))
    for row in rows:
        yield worker.run(row)


_PROCESS_WORKER: Optional[RowWorker] = None


def _start_worker_process(settings: BatchSettings, threads: int, gpus) -> None:
    """Process pool initializer: this process's GPU (before CUDA starts) and its worker, which loads nothing yet."""
    global _PROCESS_WORKER
    device = settings.device
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus.get()
        device = "cuda"
    _PROCESS_WORKER = RowWorker(settings.models_dir, device, settings.precision, threads=threads)


def _run_in_worker_process(row: Row) -> RowResult:
    return _PROCESS_WORKER.run(row)


def _gpu_ids(device: str) -> list[str]:
    """The GPUs to spread local workers over: all visible ones when the device is auto or plain cuda."""
    if device not in ("auto", "cuda") or not torch.cuda.is_available():
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else []
    return ids or [str(i) for i in range(torch.cuda.device_count())]


def _process_pool(rows: Sequence[Row], settings: BatchSettings, workers: int) -> Iterator[RowResult]:
    """N spawned processes (CUDA cannot be forked), each with its own worker and its share of the CPU cores;
    on a machine with several GPUs each process gets one (CUDA_VISIBLE_DEVICES), round robin."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    ids = _gpu_ids(settings.device)
    gpus = None
    if len(ids) > 1:
        gpus = context.Queue()
        for i in range(workers):
            gpus.put(ids[i % len(ids)])
    threads = max(1, _cpu_cores() // workers)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker_process,
                             initargs=(settings, threads, gpus)) as pool:
        futures = {pool.submit(_run_in_worker_process, row): row for row in rows}
        try:
            for future in as_completed(futures):
                row = futures[future]
                try:
                    yield future.result()
                except BrokenProcessPool as exc:
                    yield RowResult(row.number, FAILED, f"a worker process died (out of memory?): {exc}")
        finally:
            for future in futures:
                future.cancel()


def _ray_actors(ray, rows: Sequence[Row], settings: BatchSettings) -> Iterator[RowResult]:
    """The rows as calls on Ray actors, each actor a ``RowWorker`` holding its models.

    Actors rather than tasks: the loaded models are state, and an actor is Ray's unit of state. It holds its
    GPU (``num_gpus=1``, or a share when there are more workers than GPUs) for as long as the weights sit in
    that GPU's memory, where a task with a module-level
    cache would leave the weights in an idle worker process that Ray believes holds no GPU (and Ray ends GPU
    task workers after each call by default). Ray places the actors, gives each its GPU, restarts a lost
    actor and retries its call (``max_restarts``, ``max_task_retries``); the loop below only hands the next
    row to whichever actor is free, like ``ray.util.ActorPool``, while knowing which row a lost call held.
    When this connects to the cluster, the workers run this driver's copy of ``anitalker_core`` (shipped as the
    job's ``py_modules``), so a cluster needs only the dependencies installed; a caller that already called
    ``ray.init`` keeps its own job settings.
    """
    import anitalker_core

    started = not ray.is_initialized()
    if started:
        ray.init(address=settings.ray_address or None, log_to_driver=settings.verbose,
                 runtime_env={"py_modules": [anitalker_core]})
    actors = []
    try:
        resources = ray.cluster_resources()
        gpus = resources.get("GPU", 0)
        gpu = gpus > 0 if settings.device == "auto" else settings.device.startswith("cuda")
        if gpu and not gpus:
            raise AniTalkerError(f"--device {settings.device} was given, but the Ray cluster has no GPUs; "
                                 "use --device cpu or a cluster with GPUs")
        workers = min(settings.workers or (max(1, int(gpus)) if gpu else 1), len(rows))
        node_cpus = max([n["Resources"].get("CPU", 1) for n in ray.nodes() if n.get("Alive")] or [1])
        cpus = 1 if gpu else int(max(1, min(node_cpus, resources.get("CPU", 1) // workers)))
        # more workers than GPUs share them (two per GPU keep it busy while the other one encodes)
        share = math.floor(min(1.0, gpus / workers) * 1e4) / 1e4 if gpu else 0
        actor = ray.remote(RowWorker).options(
            num_gpus=share, num_cpus=cpus, max_restarts=RAY_RESTARTS, max_task_retries=RAY_RESTARTS)
        actors = [actor.remote(settings.models_dir, "cuda" if gpu else "cpu", settings.precision, threads=cpus)
                  for _ in range(workers)]
        idle, running, waiting = list(actors), {}, deque(rows)
        while waiting or running:
            while idle and waiting:
                worker, row = idle.pop(), waiting.popleft()
                running[worker.run.remote(row)] = (row, worker)
            (ref,), _ = ray.wait(list(running), num_returns=1)
            row, worker = running.pop(ref)
            idle.append(worker)
            try:
                yield ray.get(ref)
            except ray.exceptions.RayError as exc:
                yield RowResult(row.number, FAILED, f"the Ray worker was lost after {RAY_RESTARTS} restarts: {exc}")
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()


# -- the run ------------------------------------------------------------------------------------------------

def _results(rows: Sequence[Row], settings: BatchSettings) -> Iterator[RowResult]:
    """The rows' results as they finish; what cannot start at all (no ray, --workers 0) fails now."""
    if settings.workers is not None and settings.workers < 1:
        raise AniTalkerError(f"--workers must be at least 1, got {settings.workers}")
    if settings.ray_address is not None:
        try:
            import ray
        except ImportError:
            raise AniTalkerError("--ray needs the ray package: pip install 'anitalker-comfy[ray]' (or pip install "
                                 "ray); without --ray the batch runs on this machine") from None
        return _ray_actors(ray, rows, settings)
    workers = min(settings.workers or 1, len(rows))
    if workers <= 1:
        return _in_process(rows, settings)
    return _process_pool(rows, settings, workers)


def _fetch_weights(rows: Iterable[Row], settings: BatchSettings) -> None:
    """Every weight file the rows need, present before any worker starts: downloads happen once, here, and
    missing weights stop the batch now instead of failing every row."""
    for variant in sorted({r.options.variant for r in rows}):
        weight_files(settings.models_dir, variant, allow_download=settings.allow_download)


def run_batch(manifest: Path, options: argparse.ArgumentParser, defaults: argparse.Namespace,
              settings: BatchSettings) -> Summary:
    """Animate every row of ``manifest`` into ``settings.out_dir``; rows whose mp4 is complete are skipped.

    ``options`` is the parser of ``animate``'s clip options and ``defaults`` their command-line values.
    """
    from tqdm.auto import tqdm

    out_dir = Path(settings.out_dir).resolve()
    rows = read_manifest(manifest, options, defaults, out_dir)
    ready = [r for r in rows if r.options is not None]
    todo = [r for r in ready if not output_complete(r.out)]
    todo_numbers = {r.number for r in todo}
    results = _results(todo, settings)  # nothing starts yet: a missing ray fails before the report is touched
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
        for result in results if todo else ():
            record(result)
    finally:
        bar.close()
        report.close()
    return Summary(counts[DONE], counts[SKIPPED], counts[FAILED], report.path)
