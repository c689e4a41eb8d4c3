"""How much memory a run will hold, estimated before anything is allocated, and what this machine can give.

A simulation keeps K worker copies of the parameters (or a ring of D versions), Downpour's snapshots and
accumulators (2K more with local steps), the server's parameters, optimizer and rule state, the pending
group, and the data set on the device. Refusing a run that cannot fit, with the estimate and the limit, is
kinder than an allocator error a minute in.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax

from asgdjax.errors import ConfigError


class Estimate(NamedTuple):
    total_bytes: int
    parts: dict[str, int]  # what holds it, in bytes


def simulator_bytes(
    *,
    param_bytes: int,
    num_workers: int,
    ring_depth: int = 0,
    local_updates: bool = False,
    group_size: int = 1,
    optimizer_copies: int = 2,
    data_bytes: int = 0,
) -> Estimate:
    """The simulator's state plus the data: copies (or ring), snapshots and accumulators, server, group."""
    copies = ring_depth or num_workers
    parts = {
        f"{copies} {'ring versions' if ring_depth else 'worker copies'}": copies * param_bytes,
        "server (parameters + optimizer + rule state)": (1 + optimizer_copies) * param_bytes,
        f"pending group of {group_size}": group_size * param_bytes,
        "data on the device": data_bytes,
    }
    if local_updates:
        parts["Downpour snapshots + accumulators"] = 2 * num_workers * param_bytes
    return Estimate(sum(parts.values()), parts)


def available_bytes(device: jax.Device | None = None) -> tuple[int, str]:
    """(bytes the device can still give, what that limit is): an accelerator's free memory, else the host's
    available RAM (/proc/meminfo MemAvailable)."""
    device = device or jax.devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), f"free memory of {device}"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available host memory"
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"), "available host memory"


def check_fits(estimate: Estimate, what: str, *, advice: str, device: jax.Device | None = None) -> None:
    """Raise ConfigError (one line: the estimate, its biggest part, the limit, what to change) when it does
    not fit in 90% of what the device can give."""
    limit, where = available_bytes(device)
    if estimate.total_bytes <= 0.9 * limit:
        return
    part, size = max(estimate.parts.items(), key=lambda kv: kv[1])
    raise ConfigError(
        f"{what} needs about {_gib(estimate.total_bytes)} ({part}: {_gib(size)}), more than the {_gib(0.9 * limit)} "
        f"a run may take (90% of the {_gib(limit)} of {where}); {advice}"
    )


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"
