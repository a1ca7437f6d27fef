"""One device and precision policy for the nodes and the command: what 'auto' means where, and why."""

from __future__ import annotations

import os

import pytest
import torch

from anitalker_core import device_policy
from anitalker_core.device_policy import describe, render_precision, resolve_device
from anitalker_core.errors import AniTalkerError

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")


@pytest.mark.parametrize("has_bf16, choice, expected, reason", [
    (True, "auto", "bf16", "auto: this CPU has bf16 instructions"),
    (False, "auto", "fp32", "auto: this CPU has no bf16 instructions"),
    (True, "bf16", "bf16", "chosen"),
    (False, "bf16", "fp32", "bf16 chosen, but this CPU has no bf16 instructions"),
    (True, "fp16", "fp32", "CPUs have no fast fp16 convolutions"),
    (True, "fp32", "fp32", "chosen"),
])
def test_cpu_precision(monkeypatch, has_bf16, choice, expected, reason):
    monkeypatch.setattr(device_policy, "cpu_has_bf16", lambda: has_bf16)
    got = render_precision(choice, CPU)
    assert got.name == expected and reason in got.reason
    assert got.dtype == {"fp32": torch.float32, "bf16": torch.bfloat16}[expected]


def test_gpu_and_other_devices():
    assert render_precision("auto", CUDA) == device_policy.Precision("fp16", "auto: fp16 on CUDA GPUs")
    assert render_precision("bf16", CUDA).name == "bf16" and render_precision("fp32", CUDA).name == "fp32"
    assert render_precision("fp16", MPS).name == "fp32"
    with pytest.raises(AniTalkerError, match="'fp8'.*auto, fp32, fp16, bf16"):
        render_precision("fp8", CPU)


def test_the_printed_line_names_device_render_and_sampler_precision(monkeypatch):
    monkeypatch.setattr(device_policy, "cpu_has_bf16", lambda: True)
    assert describe(CPU, render_precision("auto", CPU)) == \
        "device: cpu, render precision: bf16 (auto: this CPU has bf16 instructions), sampler: fp32"


def test_devices(monkeypatch):
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto", host=torch.device("cuda:1")) == torch.device("cuda:1")  # the host's choice wins
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == CPU
    for choice in ("cuda", "cuda:1"):
        with pytest.raises(AniTalkerError, match="no CUDA GPU.*'auto' or 'cpu'"):
            resolve_device(choice)
    with pytest.raises(AniTalkerError, match="'gpu0' is not a device name"):
        resolve_device("gpu0")
    assert device_policy.default_batch_size(CPU) == 2 and device_policy.default_batch_size(CUDA) == 64


def test_autocast_follows_the_precision():
    with device_policy.autocast(CPU, torch.bfloat16):
        assert torch.is_autocast_enabled("cpu")
    with device_policy.autocast(CPU, torch.float16):  # no fp16 autocast on CPUs
        assert not torch.is_autocast_enabled("cpu")
    with device_policy.autocast(CPU, torch.float32):
        assert not torch.is_autocast_enabled("cpu")


def test_loaded_renderer_carries_the_resolved_precision(checkpoints):
    from anitalker_core.models.checkpoints import load_stage1

    chosen = render_precision("auto", CPU)
    model = load_stage1(checkpoints.stage1(), precision=chosen.name)
    assert model.compute_dtype == chosen.dtype and model.channels_last is False


def test_freed_host_memory_is_kept_for_reuse_and_can_be_turned_off(monkeypatch):
    """In a fresh process: a 48 MB tensor freed before the policy goes back to the kernel (the next one faults
    in fresh pages); freed after it, it stays for reuse. ANITALKER_KEEP_FREED_MEMORY=0 leaves glibc as it is."""
    import subprocess
    import sys

    from tests.support.golden import REPO

    from anitalker_core.device_policy import KEEP_FREED_MEMORY_ENV, keep_freed_memory

    script = ("import psutil, torch\n"
              "from anitalker_core.device_policy import keep_freed_memory\n"
              "rss = psutil.Process().memory_info\n"
              "def kept_after_free():\n"
              "    before = rss().rss\n"
              "    x = torch.ones(12 * 2**20)\n"
              "    del x\n"
              "    return (rss().rss - before) // 2**20\n"
              "kept_after_free()  # torch's own one-off allocations (thread pools, caches) first\n"
              "print(kept_after_free(), keep_freed_memory(), kept_after_free())\n")
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    before, in_force, after = out.stdout.split()
    assert in_force == "True" and int(before) < 16 and int(after) >= 40, out.stdout
    monkeypatch.setenv(KEEP_FREED_MEMORY_ENV, "0")
    assert keep_freed_memory.__wrapped__() is False  # the switch is read before glibc is touched


def test_a_gpu_renders_as_many_frames_at_once_as_half_its_available_memory_holds():
    """64 frames where they fit in half of what the GPU has available; fewer on a small card (an 8 GB card with a
    1080p restore run's models loaded has about 5.9 GB available); never none."""
    share, per_frame = device_policy.CUDA_BATCH_SHARE, device_policy.CUDA_FRAME_BYTES
    assert device_policy.default_batch_size(CUDA, available=75 * 10**9) == 64
    small = device_policy.default_batch_size(CUDA, available=int(5.9e9))
    assert small == int(5.9e9 * share) // per_frame < 64 and small * per_frame <= 5.9e9 * share
    assert device_policy.default_batch_size(CUDA, available=10**6) == 1
    assert device_policy.default_batch_size(CPU, available=10**6) == 2  # a CPU's batch is about speed, not memory


def test_the_gpu_batch_follows_the_memory_available_now(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(device_policy, "device_available", lambda device: 16 * device_policy.CUDA_FRAME_BYTES)
    assert device_policy.default_batch_size(CUDA) == 8


def test_a_render_plans_its_batch_once_so_a_changing_gpu_batch_cannot_split_it(monkeypatch):
    """On a GPU the default batch follows the memory available, which may change while a render starts; the frames
    are copied out through buffers of the planned batch, so the render must use that one plan throughout."""
    from anitalker_core.stages.frames import FrameRender
    from anitalker_core.types import PortraitCode
    from anitalker_core.video import renderer as renderer_module
    from anitalker_core.video.renderer import render_frames

    class Stub(torch.nn.Module):
        size, motion_dim, compute_dtype, channels_last = 256, 20, torch.float32, False

        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def render(self, wa, alpha, feats):
            return alpha[:, :3, None, None].expand(-1, 3, 256, 256).clone()

    sizes = iter([4, 3, 3, 3, 3, 3])
    monkeypatch.setattr(renderer_module, "default_batch_size", lambda device: next(sizes))
    portrait = PortraitCode(image=torch.zeros(1, 3, 256, 256), wa=torch.zeros(1, 512), alpha0=torch.zeros(1, 20),
                            feats=())
    latents = torch.rand(8, 20) * 0.5
    done: list[int] = []
    frames = render_frames(Stub(), portrait, latents, callback=lambda n, total: done.append(n))
    assert done == [4, 8] and torch.equal(frames[:, 0, 0], (latents[:, :3] + 1) / 2)
    sizes = iter([4, 3, 3, 3])
    done.clear()
    FrameRender(Stub(), portrait, latents).run(callback=lambda n, total: done.append(n))
    assert done == [4, 8]


def test_bf16_counts_as_a_gpus_own_from_ampere_on(monkeypatch):
    assert not device_policy.cuda_has_bf16(CPU)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not device_policy.cuda_has_bf16(CUDA)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for capability, native in (((7, 5), False), ((8, 0), True), ((9, 0), True)):  # Turing, Ampere, Hopper
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device, c=capability: c)
        assert device_policy.cuda_has_bf16(CUDA) is native


def test_each_process_gets_its_share_of_the_cores_it_may_run_on(monkeypatch):
    monkeypatch.setattr(device_policy.os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    assert [device_policy.cores_per_process(n) for n in (1, 2, 4, 8)] == [6, 3, 1, 1]
    monkeypatch.delattr(device_policy.os, "sched_getaffinity", raising=False)  # an OS without affinity
    monkeypatch.setattr(device_policy.os, "cpu_count", lambda: 4)
    assert device_policy.cores_per_process(2) == 2
