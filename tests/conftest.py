"""Shared set-up: repeatable property tests, the random-weight checkpoints and models folder made once per run, the
host allocator policy of the command, and torch's threads under pytest-xdist."""

import os
from pathlib import Path

import pytest

MODELS_VARIANT = "mfcc_full_control"
"""The stage-2 model of the shared models folder: the smallest download that has every control."""


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory, request):
    """The fixture weights in the official layouts (``stage1.ckpt`` with or without ``lia.``, each stage-2 variant),
    each file written once for the whole run, on first use, and read by every test and models folder after. Under
    pytest-xdist the workers share one folder beside their own temporary folders (the run's), so a file one worker
    wrote is the others' too."""
    from tests.support.golden import Checkpoints

    if hasattr(request.config, "workerinput") and os.name == "posix":  # an xdist worker
        return Checkpoints(tmp_path_factory.getbasetemp().parent / "checkpoints")
    return Checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="session")
def models_dir(checkpoints, tmp_path_factory) -> Path:
    """A models folder as a user fills it: ``stage1.ckpt`` with the ``lia.`` prefix some released copies carry
    and the MFCC full-control generator, in the official layouts (links to the session's checkpoints)."""
    return checkpoints.models_folder(tmp_path_factory.mktemp("models"), stage2=(MODELS_VARIANT,))


@pytest.fixture(scope="session")
def gfpgan_file(checkpoints) -> Path:
    """A random-weight GFPGAN v1.4 of the real size saved as GFPGANv1.4.pth is (``params_ema``), written once for
    the whole run (350 MB), beside the checkpoints."""
    from tests.support.image_models import write_gfpgan

    return checkpoints.file("faces/GFPGANv1.4.pth", write_gfpgan)


def pytest_configure(config):
    """Property tests draw the same examples on every run and machine, so a red run is reproducible (a bug that
    exploring finds becomes an explicit test). The suite runs under the host allocator policy the command and its
    workers set for themselves. Under pytest-xdist each worker process takes its share of the cores for torch's
    intra-op threads (one each with two workers on two cores), as the batch command's worker processes do: more
    threads than cores only wait on each other; OpenCV's pool likewise. The processes a test starts (the installed
    command, batch workers) inherit that share through ``OMP_NUM_THREADS``. The xdist controller, which runs no
    test, only hands the files out, and starts its workers without waiting for torch."""
    if getattr(config.option, "dist", "no") in ("loadfile", "loadscope"):  # the controller hands files out
        config.option.loadscopereorder = False  # in the order pytest_collection_modifyitems gives
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return  # the xdist controller
    from hypothesis import settings

    settings.register_profile("repeatable", derandomize=True, database=None)
    settings.load_profile("repeatable")
    from anitalker_core.device_policy import cores_per_process, keep_freed_memory

    keep_freed_memory()
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        import torch

        share = cores_per_process(workers)
        torch.set_num_threads(share)
        os.environ.setdefault("OMP_NUM_THREADS", str(share))
        import cv2

        cv2.setNumThreads(share)  # the face detector's own thread pool


LONGEST_FILES = ("test_estimate.py", "test_nodes.py", "test_image_model_files.py", "test_batch.py", "test_parity.py",
                 "test_cli.py", "test_dub.py", "test_portrait_crop.py", "test_bench_gpu.py", "test_faults.py")
"""The test files that take longest (CI prints the slowest tests), longest first."""


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist the longest files are handed out first, so that the workers end together (files go whole
    to a worker, and one started last would run on alone); within a file the order stays. (pytest_configure keeps
    xdist from reordering the files by their number of tests.)"""
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")) > 1:
        rank = {name: i for i, name in enumerate(LONGEST_FILES)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
