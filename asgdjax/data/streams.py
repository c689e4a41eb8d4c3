"""Deterministic per-worker batch streams: (seed, worker, num_workers) fixes a worker's shard and order.

Epoch e draws one global permutation of the training set from (seed, e); worker w of K takes every K-th
element starting at w and cuts it into batches (the ragged end is dropped). So batch s of worker w is a pure
function of (seed, w, K, batch_size, s): the simulator, the runtime and a replay all see the same examples.
"""

from __future__ import annotations

import functools

import numpy as np


class WorkerStream:
    """Index batches for one worker; `batch(s)` is random access (any step, any order)."""

    def __init__(self, num_examples: int, batch_size: int, seed: int, worker: int = 0, num_workers: int = 1):
        if not 0 <= worker < num_workers:
            raise ValueError(f"worker {worker} not in [0, {num_workers})")
        shard = len(range(worker, num_examples, num_workers))
        if shard < batch_size:
            raise ValueError(
                f"batch_size {batch_size} exceeds worker {worker}'s shard of {shard} examples "
                f"({num_examples} examples / {num_workers} workers)"
            )
        self.num_examples, self.batch_size = num_examples, batch_size
        self.seed, self.worker, self.num_workers = seed, worker, num_workers
        self.steps_per_epoch = shard // batch_size

    def batch(self, step: int) -> np.ndarray:
        """The int32 example indices of this worker's batch number `step`."""
        epoch, j = divmod(step, self.steps_per_epoch)
        shard = _epoch_permutation(self.num_examples, self.seed, epoch)[self.worker :: self.num_workers]
        return shard[j * self.batch_size : (j + 1) * self.batch_size]


@functools.lru_cache(maxsize=64)
def _epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    rng = np.random.Generator(np.random.Philox(key=[seed & 0xFFFFFFFFFFFFFFFF, epoch]))
    perm = rng.permutation(n).astype(np.int32)
    perm.setflags(write=False)
    return perm
