"""Every random stream of a run derived from one root key, so seed s and seed s + 1 share no stream."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np


class RunKeys(NamedTuple):
    init: jax.Array  # initial parameters
    data: jax.Array  # per-batch keys: augmentation, dropout (`batch_key(data, worker, step)`)
    schedule: jax.Array  # the delay model's step times
    sampler_seed: int  # 64-bit seed of the example order (numpy: permutations, hashes)


def run_keys(seed: int | jax.Array) -> RunKeys:
    """Split the root key (`jax.random.key(seed)`, or a key given as is) into the run's independent streams."""
    root = jax.random.key(seed) if isinstance(seed, (int, np.integer)) else seed
    k_init, k_data, k_schedule, k_sampler = jax.random.split(root, 4)
    words = np.asarray(jax.random.key_data(k_sampler)).ravel().astype(np.uint64)
    sampler_seed = int((words[0] << np.uint64(32)) | words[-1])
    return RunKeys(k_init, k_data, k_schedule, sampler_seed)
