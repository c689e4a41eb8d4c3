"""Compute-time models for simulated workers: how long each worker's step s takes, in virtual seconds.

A `DelayModel` is pure data; `StepTimes(model, key, K)` draws step times deterministically from a PRNG key,
block by block (fold_in(key, worker, block)), so any (worker, step) is reproducible without drawing the
whole run. The schedule generator (asgdjax.sim.schedule) turns step times into arrival order.
"""

from __future__ import annotations

import dataclasses
import math
import numbers as _numbers

import jax
import numpy as np

from asgdjax.errors import ConfigError
from asgdjax.flag_lists import numbers

KINDS = ("constant", "uniform", "exponential", "lognormal", "uniform_staleness")
COMM_KEYS = (
    "payload_bytes",
    "worker_bandwidth",
    "worker_latency",
    "server_bandwidth",
    "server_latency",
    "apply_seconds",
)
BLOCK = 1024


@dataclasses.dataclass(frozen=True)
class DelayModel:
    """Per-step compute time = mean * speed[worker] * noise(kind) * (factor if straggling)."""

    kind: str = "exponential"
    mean: float = 1.0
    spread: float = 0.5  # uniform: half-width relative to the mean; lognormal: sigma of log time
    speeds: tuple[float, ...] = ()  # relative step time per worker; missing entries are 1
    straggler_prob: float = 0.0
    straggler_factor: float = 1.0
    staleness_bound: int = 0  # uniform_staleness (Dai et al. 2019): tau uniform on {0..bound}
    latency: float = 0.0  # from a gradient being ready to the server taking it (network, notification)
    service: float = 0.0  # server time per arrival (apply, fetch, dispatch), one arrival at a time
    # Communication (Paine et al. 2013's regime): a push moves the gradient device -> host -> server and a
    # fetch the parameters back; each costs latency + bytes / bandwidth on each link. The server's link is
    # shared by every worker (one queue each way); 0 bandwidth = free. n_fetch / n_push amortise these.
    payload_bytes: float = 0.0  # bytes of one push or fetch (the parameters in the dtype sent); < 0: the model's
    worker_bandwidth: float = 0.0  # bytes/s of each worker's device <-> host link (PCIe); 0 = free
    worker_latency: float = 0.0  # seconds per transfer on that link
    server_bandwidth: float = 0.0  # bytes/s of the server's network link, shared by all workers; 0 = free
    server_latency: float = 0.0  # seconds per transfer on the network
    apply_seconds: float = 0.0  # server seconds to apply one update (serial, after `service`)
    # A worker computing alone (the warm start, a straggler's tail) on a host whose workers and coordinator
    # share cores runs its step, latency and service this much faster or slower than the shared clock.
    solo: float = 1.0

    def __post_init__(self):
        self._check_types()
        if self.kind not in KINDS:
            raise ConfigError(f"unknown delay.kind {self.kind!r}; allowed: {', '.join(KINDS)}")
        if not (math.isfinite(self.mean) and self.mean > 0):
            raise ConfigError(f"delay.mean={self.mean!r} is not allowed; use a finite number > 0")
        if self.kind == "uniform" and not 0 <= self.spread < 1:
            raise ConfigError(f"delay.spread={self.spread!r} is not allowed for uniform; use [0, 1)")
        if self.kind == "lognormal" and not self.spread >= 0:
            raise ConfigError(f"delay.spread={self.spread!r} is not allowed for lognormal; use >= 0")
        if any(not (math.isfinite(s) and s > 0) for s in self.speeds):
            raise ConfigError(f"delay.speeds={self.speeds!r} is not allowed; use positive numbers")
        if not 0 <= self.straggler_prob <= 1:
            raise ConfigError(f"delay.straggler_prob={self.straggler_prob!r} is not allowed; use [0, 1]")
        if not self.straggler_factor >= 1:
            raise ConfigError(f"delay.straggler_factor={self.straggler_factor!r} is not allowed; use >= 1")
        for key in ("latency", "service", "worker_latency", "server_latency", "apply_seconds"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"delay.{key}={value!r} is not allowed; use seconds >= 0")
        if self.staleness_bound < 0:
            raise ConfigError(f"delay.staleness_bound={self.staleness_bound!r} is not allowed; use >= 0")
        if not (math.isfinite(self.solo) and self.solo > 0):
            raise ConfigError(f"delay.solo={self.solo!r} is not allowed; use a number > 0 (1 = as when shared)")
        if not math.isfinite(self.payload_bytes):
            raise ConfigError(
                f"delay.payload_bytes={self.payload_bytes!r} is not allowed; use bytes (< 0: the model's)"
            )
        for key in ("worker_bandwidth", "server_bandwidth"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"delay.{key}={value!r} is not allowed; use a number >= 0 (0 = free)")

    def check_workers(self, num_workers: int, shown: str = "") -> None:
        """One relative step time per worker, or none (all 1); `shown`: the speeds as the user wrote them."""
        if self.speeds and len(self.speeds) != num_workers:
            raise ConfigError(
                f"delay.speeds={shown or self.speeds!r} has {len(self.speeds)} entries for num_workers={num_workers}; "
                "give one relative step time per worker, or none for all 1"
            )

    def _check_types(self) -> None:
        """Every field a number (speeds: numbers, one per worker); a list of speeds is kept as a tuple."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "speeds":
                if not isinstance(value, tuple | list) or not all(_is_number(x) for x in value):
                    raise ConfigError(
                        f"delay.speeds={value!r} is not allowed; use a tuple of numbers > 0, one per worker"
                    )
                object.__setattr__(self, "speeds", tuple(float(x) for x in value))
            elif f.name == "staleness_bound" and (isinstance(value, bool) or not isinstance(value, _numbers.Integral)):
                raise ConfigError(f"delay.staleness_bound={value!r} is not allowed; use an integer >= 0")
            elif f.name != "kind" and not _is_number(value):
                raise ConfigError(f"delay.{f.name}={value!r} is not allowed; use a number")

    def with_payload(self, model_bytes: float) -> DelayModel:
        """This model with payload_bytes < 0 ("the model's parameters") resolved to `model_bytes`."""
        return dataclasses.replace(self, payload_bytes=float(model_bytes)) if self.payload_bytes < 0 else self

    @property
    def communicates(self) -> bool:
        """Whether pushes and fetches cost time of their own (links, latencies, the server's apply)."""
        links = (self.worker_bandwidth or self.server_bandwidth) and self.payload_bytes != 0
        return bool(links or self.worker_latency or self.server_latency or self.apply_seconds)

    def _bytes(self) -> float:
        if self.payload_bytes < 0:
            raise ValueError("delay.payload_bytes < 0 (the model's bytes) must be resolved with with_payload()")
        return self.payload_bytes

    def worker_transfer(self) -> float:
        """Seconds to move one payload over a worker's device <-> host link."""
        return self.worker_latency + (self._bytes() / self.worker_bandwidth if self.worker_bandwidth else 0.0)

    def server_transfer(self) -> float:
        """Seconds the server's link is busy with one payload (its latency is paid on top, in parallel)."""
        return self._bytes() / self.server_bandwidth if self.server_bandwidth else 0.0

    def speed(self, worker: int) -> float:
        return self.speeds[worker] if worker < len(self.speeds) else 1.0

    @classmethod
    def from_config(cls, c) -> DelayModel:
        text = str(c.speeds) if c.speeds else ""
        speeds: tuple[float, ...] = ()
        if text:  # one entry per worker: "1,1,3" is three workers, not two
            speeds = tuple(
                numbers("config.delay.speeds", text, float, allowed="speeds > 0", ok=_positive, unique=False)
            )
        return cls(
            kind=c.kind,
            mean=float(c.mean),
            spread=float(c.spread),
            speeds=speeds,
            straggler_prob=float(c.straggler_prob),
            straggler_factor=float(c.straggler_factor),
            staleness_bound=int(c.staleness_bound),
            latency=float(c.get("latency", 0.0)),
            service=float(c.get("service", 0.0)),
            **{k: float(c.get(k, 0.0)) for k in COMM_KEYS},
            solo=float(c.get("solo", 1.0)),
        )


class StepTimes:
    """Deterministic step times: `time(worker, step)` for any worker and step, drawn lazily in blocks."""

    def __init__(self, model: DelayModel, key: jax.Array, num_workers: int):
        self.model, self.key, self.num_workers = model, key, num_workers
        self._blocks: dict[tuple[int, int], np.ndarray] = {}

    def time(self, worker: int, step: int) -> float:
        block, j = divmod(step, BLOCK)
        arr = self._blocks.get((worker, block))
        if arr is None:
            arr = self._draw(worker, block)
            self._blocks[(worker, block)] = arr
        return float(arr[j])

    def _draw(self, worker: int, block: int) -> np.ndarray:
        m = self.model
        k_noise, k_strag = jax.random.split(jax.random.fold_in(jax.random.fold_in(self.key, worker), block))
        base = m.mean * m.speed(worker)
        if m.kind == "constant" or m.kind == "uniform_staleness":
            noise = np.ones(BLOCK)
        elif m.kind == "uniform":
            noise = 1.0 + m.spread * np.asarray(jax.random.uniform(k_noise, (BLOCK,), minval=-1.0, maxval=1.0))
        elif m.kind == "exponential":
            noise = np.asarray(jax.random.exponential(k_noise, (BLOCK,)))
        else:  # lognormal with mean 1
            noise = np.exp(m.spread * np.asarray(jax.random.normal(k_noise, (BLOCK,))) - 0.5 * m.spread**2)
        times = base * noise.astype(np.float64)
        if m.straggler_prob > 0:
            slow = np.asarray(jax.random.bernoulli(k_strag, m.straggler_prob, (BLOCK,)))
            times = np.where(slow, times * m.straggler_factor, times)
        return np.maximum(times, 1e-12)


def _positive(x: float) -> bool:
    return 0 < x < float("inf")


def _is_number(value: object) -> bool:
    return isinstance(value, _numbers.Real) and not isinstance(value, bool)
