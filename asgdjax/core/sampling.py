"""Which examples each worker's batch holds: deterministic, random-access samplers.

A sampler maps (worker, step) to batch_size example indices as a pure function of its seed, so the
simulator, the runtime and a replay all see the same examples, in any order, without drawing the run:
  ShardSampler        without replacement: epoch e draws one permutation of the training set from
                      (seed, e) (numpy Philox); worker w of K takes every K-th element from offset w and
                      cuts it into batches (the ragged end is dropped);
  ReplacementSampler  with replacement: every index is a counter-based hash of (seed, worker, step, slot),
                      so any batch size works whatever the number of workers.
`indices(workers, steps)` answers a whole chunk of events at once (vectorised numpy).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Protocol, runtime_checkable

import numpy as np

from asgdjax.errors import ConfigError

SAMPLERS = ("shards", "replacement")


@runtime_checkable
class Sampler(Protocol):
    @property
    def batch_size(self) -> int: ...

    @property
    def num_examples(self) -> int: ...

    def indices(self, workers: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """int32[len(workers), batch_size]: the examples of each (worker, step)."""
        ...


@dataclasses.dataclass(frozen=True)
class ShardSampler:
    """Without replacement: each worker walks its 1/K share of every epoch's permutation."""

    num_examples: int
    batch_size: int
    seed: int
    num_workers: int = 1

    def __post_init__(self) -> None:
        _check_sizes(self.num_examples, self.batch_size)
        smallest = self.num_examples // self.num_workers  # the last worker's shard
        if smallest < 1:
            raise ConfigError(
                f"there are fewer examples ({self.num_examples}) than workers ({self.num_workers}) to split them "
                "among; use sampler='replacement' or fewer workers"
            )
        if smallest < self.batch_size:
            raise ConfigError(
                f"batch_size={self.batch_size} exceeds a worker's shard of {smallest} examples "
                f"({self.num_examples} examples / {self.num_workers} workers); use batch_size <= {max(smallest, 1)}, "
                "fewer workers, or sampler='replacement'"
            )

    def steps_per_epoch(self, worker: int) -> int:
        return len(range(worker, self.num_examples, self.num_workers)) // self.batch_size

    def batch(self, worker: int, step: int) -> np.ndarray:
        """The int32 example indices of worker `worker`'s batch number `step`."""
        out: np.ndarray = self.indices(np.asarray([worker]), np.asarray([step]))[0]
        return out

    def indices(self, workers: np.ndarray, steps: np.ndarray) -> np.ndarray:
        w = np.asarray(workers, np.int64)
        s = np.asarray(steps, np.int64)
        k, b = self.num_workers, self.batch_size
        spe = ((self.num_examples - w + k - 1) // k) // b
        epoch, j = np.divmod(s, spe)
        pos = w[:, None] + k * (j[:, None] * b + np.arange(b)[None, :])
        out: np.ndarray = np.empty((len(w), b), np.int32)
        for e in np.unique(epoch):
            rows = epoch == e
            out[rows] = _epoch_permutation(self.num_examples, self.seed, int(e))[pos[rows]]
        return out


@dataclasses.dataclass(frozen=True)
class ReplacementSampler:
    """With replacement: index = hash(seed, worker, step, slot) mod num_examples (splitmix64)."""

    num_examples: int
    batch_size: int
    seed: int

    def __post_init__(self) -> None:
        _check_sizes(self.num_examples, self.batch_size)

    def batch(self, worker: int, step: int) -> np.ndarray:
        out: np.ndarray = self.indices(np.asarray([worker]), np.asarray([step]))[0]
        return out

    def indices(self, workers: np.ndarray, steps: np.ndarray) -> np.ndarray:
        w = np.asarray(workers).astype(np.uint64)
        s = np.asarray(steps).astype(np.uint64)
        base = _mix(_mix(np.uint64(self.seed & _MASK) ^ w) ^ s)
        h = _mix(base[:, None] + _GOLDEN * np.arange(1, self.batch_size + 1, dtype=np.uint64)[None, :])
        out: np.ndarray = (h % np.uint64(self.num_examples)).astype(np.int32)
        return out


def event_seeds(seed: int, workers: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """A 64-bit seed per (worker, step) from the run's seed (host-side augmentation keyed like the batch)."""
    w = np.asarray(workers).astype(np.uint64)
    s = np.asarray(steps).astype(np.uint64)
    return _mix(_mix(_mix(np.asarray([seed & _MASK], np.uint64)) ^ w) ^ s)


def make_sampler(
    kind: str, *, num_examples: int, batch_size: int, seed: int, num_workers: int = 1
) -> ShardSampler | ReplacementSampler:
    """The sampler called `kind` (see SAMPLERS); a bad name or size is one ConfigError line."""
    if kind == "shards":
        return ShardSampler(num_examples, batch_size, seed, num_workers)
    if kind == "replacement":
        return ReplacementSampler(num_examples, batch_size, seed)
    raise ConfigError(f"unknown sampler {kind!r}; allowed: {', '.join(SAMPLERS)}")


def check_sampler(sampler: Sampler, *, num_examples: int, batch_size: int, num_workers: int) -> None:
    """Refuse (one line) a sampler built for other data, batch size or workers: its indices would be out of
    range (a gather clips them to the last row: asgdjax.core.task.take_rows), or batches of another size,
    or shards that overlap."""
    if int(sampler.num_examples) != num_examples:
        raise ConfigError(
            f"the sampler draws from num_examples={sampler.num_examples} but the data has {num_examples} rows; "
            f"build it with num_examples={num_examples}"
        )
    if int(sampler.batch_size) != batch_size:
        raise ConfigError(
            f"the sampler draws batches of {sampler.batch_size} but batch_size={batch_size}; pass "
            f"batch_size={sampler.batch_size} too (or build the sampler with batch_size={batch_size})"
        )
    shards = getattr(sampler, "num_workers", None)
    if shards is not None and int(shards) != num_workers:
        raise ConfigError(
            f"the sampler splits the data among num_workers={shards} but the run has {num_workers} workers; "
            f"build it with num_workers={num_workers}"
        )


def _check_sizes(num_examples: int, batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} is not allowed; use a positive integer")
    if num_examples < 1:
        raise ConfigError(f"the training data has {num_examples} examples; need at least 1")


_MASK = 0xFFFFFFFFFFFFFFFF
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (Steele et al. 2014), elementwise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = np.asarray(np.asarray(x, np.uint64) + _GOLDEN)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        out: np.ndarray = x ^ (x >> np.uint64(31))
        return out


@functools.lru_cache(maxsize=64)
def _epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    rng = np.random.Generator(np.random.Philox(key=[seed & _MASK, epoch]))
    perm = rng.permutation(n).astype(np.int32)
    perm.setflags(write=False)
    return perm
