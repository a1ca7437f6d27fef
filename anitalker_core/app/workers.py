"""Who animates the rows: a ``RowWorker`` keeps its models loaded from one row to the next; the same class runs
in this process, in each local worker process (one GPU each on a multi-GPU machine) and as a Ray actor."""

from __future__ import annotations

import math
import os
import time
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch

from ..device_policy import cores_per_process, keep_freed_memory
from ..errors import AniTalkerError
from ..models.loading import LoadedModels
from .headless import clip_of_row, tqdm_progress
from .manifest import Row
from .report import DONE, FAILED, RowResult

RAY_RESTARTS = 2
"""How often Ray restarts a lost worker actor, and retries the row it was animating, before the row fails."""


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
                clip_of_row(self.models, row.options, progress=self.progress, say=notes.append)
        except AniTalkerError as exc:
            return RowResult(row.number, FAILED, str(exc), time.perf_counter() - start, "\n".join(notes))
        except Exception as exc:  # a bug or the machine (CUDA out of memory): recorded, and the next row runs
            return RowResult(row.number, FAILED, f"{type(exc).__name__}: {exc}", time.perf_counter() - start,
                             "\n".join(notes), traceback.format_exc())
        return RowResult(row.number, DONE, "", time.perf_counter() - start, "\n".join(notes))


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
    threads = cores_per_process(workers)
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


def results(rows: Sequence[Row], settings: BatchSettings) -> Iterator[RowResult]:
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
