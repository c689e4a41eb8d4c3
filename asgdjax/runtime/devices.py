"""Which device each worker runs on: round-robin over the local devices, or an explicit list."""

from __future__ import annotations

import jax

from asgdjax.errors import ConfigError


def assign_devices(num_workers: int, spec: str = "") -> list:
    """Devices for workers 0..K-1: `spec` is "" (round-robin over jax.devices()) or comma-separated ids."""
    devices = jax.devices()
    if not spec:
        return [devices[w % len(devices)] for w in range(num_workers)]
    try:
        ids = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"devices={spec!r} is not allowed; use comma-separated device ids") from None
    bad = [i for i in ids if not 0 <= i < len(devices)]
    if bad or len(ids) != num_workers:
        raise ConfigError(
            f"devices={spec!r} is not allowed; give {num_workers} ids in 0..{len(devices) - 1} (one per worker)"
        )
    return [devices[i] for i in ids]
