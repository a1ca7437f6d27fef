"""The memory a machine has left, on the host and on a GPU: what every estimate and batch size is measured
against.

Host: psutil or Linux's MemAvailable, capped by a container's memory limit. GPU: its free memory plus what PyTorch
has cached but not in use.
"""

from __future__ import annotations

import os
from typing import Optional

import torch

CGROUP_LIMITS = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory.stat",
                  "inactive_file"),
                 ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes",
                  "/sys/fs/cgroup/memory/memory.stat", "total_inactive_file"))
"""(limit, usage, stat, reclaimable cache key) of a container's memory limit, cgroup v2 then v1."""


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            text = f.read().strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def _container_room() -> Optional[int]:
    """Bytes left under the container's memory limit (usage minus reclaimable page cache), None without a limit."""
    for limit_file, usage_file, stat_file, cache_key in CGROUP_LIMITS:
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is None or usage is None or limit >= 2**60:
            continue
        cache = 0
        try:
            with open(stat_file) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == cache_key and value.strip().isdigit():
                        cache = int(value)
        except OSError:
            pass
        return max(limit - usage + cache, 0)
    return None


def host_available() -> Optional[int]:
    """RAM the system can give without swapping: psutil, else Linux's MemAvailable (and a container's limit);
    None where neither is known."""
    found: Optional[int] = None
    try:
        import psutil

        found = int(psutil.virtual_memory().available)
    except ImportError:
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        found = int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            found = None
    room = _container_room()
    return room if found is None else (found if room is None else min(found, room))


def resident_memory() -> int:
    """Bytes of RAM this process holds now (0 when unknown)."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0


def device_available(device: torch.device) -> Optional[int]:
    """Free memory on a CUDA device, counting what PyTorch has cached but not in use; None elsewhere (the CPU's is
    the host's)."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def device_in_use(device: torch.device) -> int:
    """Bytes PyTorch has allocated on a CUDA device now; 0 elsewhere."""
    return int(torch.cuda.memory_allocated(device)) if device.type == "cuda" else 0
