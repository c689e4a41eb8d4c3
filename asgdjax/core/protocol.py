"""The server protocol: a frozen specification (`ProtocolSpec`) and the state machine it drives
(`Protocol`), fed with arrivals by the simulator's virtual clock and by the real runtime's coordinator
alike, so a run's trace means the same thing in either.

Protocols (Dean et al. 2012 Downpour; Ho et al. 2013 SSP; Zhang et al. 2016 n-softsync):
  async     every push is applied on arrival (plain A-SGD), unless the staleness bound says wait;
  softsync  the server applies every c = floor(K / n) pushes; learners do not wait for the update;
  sync      the staleness bound s = 0: every round's K gradients are averaged into one update, which is
            minibatch SGD with batch K * B.
Downpour clients push every `n_push` local steps and fetch every `n_fetch`. Staleness bound s (SSP,
`max_staleness`): a push is applied only if no other unfinished gradient would then exceed staleness s;
otherwise its worker waits, and mutually blocking workers are released together as one averaged update.
A held push is written to the trace when it is applied (the waiting worker's parameters do not change,
so its gradient is the same). `warm_start_steps`: worker 0 trains alone first (Paine et al. 2013).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from asgdjax.core.trace import Fetch, Row
from asgdjax.errors import ConfigError

KINDS = ("async", "softsync", "sync")


@dataclasses.dataclass(frozen=True)
class ProtocolSpec:
    """Everything the schedule, the simulator and the runtime need to know about the protocol, derived once."""

    num_workers: int = 1
    kind: str = "async"
    softsync_n: int = 1
    max_staleness: int = -1
    n_fetch: int = 1
    n_push: int = 1
    warm_start_steps: int = 0

    def __post_init__(self) -> None:
        _check_int("num_workers", self.num_workers, 1, "a positive integer")
        if self.kind not in KINDS:
            raise ConfigError(f"unknown protocol {self.kind!r}; allowed: {', '.join(KINDS)}")
        for key in ("n_fetch", "n_push", "softsync_n"):
            _check_int(key, getattr(self, key), 1, "a positive integer")
        _check_int("max_staleness", self.max_staleness, -1, "-1 (unbounded) or >= 0")
        _check_int("warm_start_steps", self.warm_start_steps, 0, "an integer >= 0")
        if self.kind == "softsync" and self.softsync_n > self.num_workers:
            raise ConfigError(
                f"softsync_n={self.softsync_n} is not allowed with num_workers={self.num_workers}; use 1..num_workers"
            )
        if self.kind == "softsync" and self.max_staleness >= 0:
            raise ConfigError("max_staleness is not allowed with protocol='softsync'; use -1 or protocol='async'")

    @property
    def bound(self) -> int:
        """The SSP staleness bound in force (sync is the bound 0); -1: none."""
        return 0 if self.kind == "sync" else self.max_staleness

    @property
    def softsync_group(self) -> int:
        """Pushes per update under n-softsync (c = floor(K / n)); 1 otherwise."""
        return max(1, self.num_workers // self.softsync_n) if self.kind == "softsync" else 1

    @property
    def group_size(self) -> int:
        """The most gradients one server update can take (the simulator's pending-group width)."""
        if self.kind == "softsync":
            return self.softsync_group
        return self.num_workers if self.bound >= 0 else 1

    @property
    def expected_staleness(self) -> float:
        """A prior for the mean staleness before any is measured: K - 1 for plain A-SGD with memoryless
        workers, at most the SSP bound, 0 for sync, about the group count n for n-softsync (Zhang 2016)."""
        if self.kind == "sync":
            return 0.0
        if self.kind == "softsync":
            return float(self.softsync_n)
        tau = float(self.num_workers - 1)
        return min(tau, float(self.max_staleness)) if self.max_staleness >= 0 else tau

    @property
    def local_updates(self) -> bool:
        """Downpour clients step their own copy between fetches or pushes."""
        return self.n_fetch > 1 or self.n_push > 1

    def machine(self, num_steps: int) -> Protocol:
        """A fresh state machine for a run of `num_steps` gradients."""
        return Protocol(self, num_steps)

    def expected_updates(self, num_steps: int) -> int:
        """Server updates for `num_steps` gradients when no worker waits on the SSP bound."""
        pushes = max(1, num_steps // self.n_push)
        if self.kind == "sync":
            return max(1, -(-pushes // self.num_workers))
        return max(1, -(-pushes // self.softsync_group))

    def meta(self) -> dict[str, Any]:
        """The trace metadata that says which protocol wrote a trace (what a replay must match)."""
        return {
            "protocol": self.kind,
            "softsync_n": self.softsync_n,
            "max_staleness": self.bound,
            "n_fetch": self.n_fetch,
            "n_push": self.n_push,
            "warm_start_steps": self.warm_start_steps,
        }

    @classmethod
    def from_config(cls, config: Any) -> ProtocolSpec:
        """The spec of an ml_collections config (keys protocol, num_workers, softsync_n, ...)."""
        return cls(
            num_workers=config.num_workers,
            kind=config.protocol,
            softsync_n=config.softsync_n,
            max_staleness=config.max_staleness,
            n_fetch=config.n_fetch,
            n_push=config.n_push,
            warm_start_steps=config.warm_start_steps,
        )


def _check_int(key: str, value: object, lowest: int, allowed: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise ConfigError(f"{key}={value!r} is not allowed; use {allowed}")


class Protocol:
    """The state machine: `begin()` says which (worker, step)s start; `arrive(w, s, t)` reports that worker
    w finished local step s at time t and returns the steps to start now; every server decision is
    appended to `rows` (trace rows)."""

    def __init__(self, spec: ProtocolSpec, num_steps: int):
        self.spec = spec
        self.K, self.num_steps = spec.num_workers, num_steps
        self.group, self.s = spec.softsync_group, spec.bound
        self.n_fetch, self.n_push = spec.n_fetch, spec.n_push
        self.warm = min(spec.warm_start_steps, num_steps) if self.K > 1 else 0
        self.limit = self.warm or num_steps
        self.version = 0
        self.read = [0] * self.K  # version each worker's local copy was fetched at
        self.next_step = [0] * self.K
        self.started = 0
        self.in_flight: set[int] = set()
        self.held: dict[int, tuple[float, int]] = {}  # worker -> (t_arrive, step): pushed, waiting
        self.pending: list[int] = []  # softsync: row indices of pushes in the current group
        self.rows: list[Row] = []
        self.dropped: set[int] = set()
        self.failures: list[dict[str, Any]] = []  # worker, step, time, error, dropped

    @property
    def done(self) -> bool:
        return not self.in_flight and not self.held and self.limit == self.num_steps

    def begin(self) -> list[tuple[int, int]]:
        """The steps that start now: worker 0 alone during a warm start, else every worker."""
        starts: list[tuple[int, int]] = []
        for w in range(1 if self.warm and self.limit == self.warm else self.K):
            self._start(w, starts)
        return starts

    def snapshot(self) -> dict[str, Any]:
        """What a checkpoint needs to continue: applied rows and counters, with unfinished steps rolled back.

        Steps in flight and pushes held by the SSP bound are not in the rows yet; they are given back to
        their workers (recomputed after a resume). A softsync group in progress cannot be cut: call this
        only when `pending` is empty.
        """
        if self.pending:
            raise ValueError("cannot snapshot inside a softsync group")
        next_step, started = list(self.next_step), self.started
        for w in self.in_flight | set(self.held):
            next_step[w] -= 1
            started -= 1
        return {
            "rows": list(self.rows),
            "version": self.version,
            "read": list(self.read),
            "next_step": next_step,
            "started": started,
            "limit": self.limit,
            "dropped": sorted(self.dropped),
            "failures": list(self.failures),
        }

    def resume(self, snap: dict[str, Any], t: float) -> None:
        """Continue from `snapshot()`: every worker restarts from the server's parameters (a fetch-only
        row each, which also drops unpushed local gradients); call begin() next."""
        self.rows = [Row(*r) for r in snap["rows"]]
        self.version, self.read = int(snap["version"]), [int(x) for x in snap["read"]]
        self.next_step, self.started = [int(x) for x in snap["next_step"]], int(snap["started"])
        self.limit, self.dropped = int(snap["limit"]), {int(w) for w in snap["dropped"]}
        self.failures = list(snap["failures"])
        for w in range(self.K):
            if w not in self.dropped:
                self.read[w] = self.version
                self.rows.append(Row.fetch_only(w, self.version, t))

    def pushes(self, w: int, s: int) -> bool:
        """Whether worker w's step s ends a push, as `arrive` will decide it (every n_push local steps, and
        every worker's last step); the virtual clock charges a push its transfer before it arrives."""
        return (s + 1) % self.n_push == 0 or self.started >= self.limit

    def arrive(self, w: int, s: int, t: float) -> list[tuple[int, int]]:
        """Worker w finished local step s at time t; returns the (worker, step)s to start at time t."""
        if w not in self.in_flight or self.next_step[w] != s + 1:
            raise ValueError(f"unexpected arrival of worker {w} step {s}")
        self.in_flight.discard(w)
        starts: list[tuple[int, int]] = []
        last = self.started >= self.limit
        push = (s + 1) % self.n_push == 0 or last
        fetch_due = (s + 1) % self.n_fetch == 0
        fetch = Fetch.NOW if fetch_due else Fetch.NONE
        if not push:
            if fetch_due:
                self.read[w] = self.version
            self.rows.append(Row(w, s, False, False, fetch, self.read[w], -1, t, t))
            self._start(w, starts)
        elif self.group > 1:  # softsync: join the group, fetch now, keep going
            self.pending.append(len(self.rows))
            self.rows.append(Row(w, s, True, False, fetch, self.read[w], -1, t, t))
            if len(self.pending) == self.group:
                self._apply_pending(t)
            if fetch_due:
                self.read[w] = self.version
            self._start(w, starts)
        else:
            self.held[w] = (t, s)
        self._settle(t, starts)
        return starts

    def fail(self, w: int, s: int, t: float, error: str = "", drop: bool = False) -> list[tuple[int, int]]:
        """Worker w's step s failed (raised, or hung past its timeout) at time t; returns steps to start.

        Nothing of the failed step is applied. The worker restarts: it fetches the server's parameters (a
        fetch-only trace row, which also clears gradients it accumulated but never pushed) and retries step
        s, keeping the (worker, step) key unique; or, with drop=True, it is removed and the others take its
        share of the step budget.
        """
        if w not in self.in_flight or self.next_step[w] != s + 1:
            raise ValueError(f"unexpected failure of worker {w} step {s}")
        self.in_flight.discard(w)
        self.next_step[w] = s
        self.started -= 1
        self.failures.append({"worker": w, "step": s, "time": t, "error": error, "dropped": drop})
        starts: list[tuple[int, int]] = []
        if drop:
            self.dropped.add(w)
        else:
            self.read[w] = self.version
            self.rows.append(Row.fetch_only(w, self.version, t))
            self._start(w, starts)
        self._settle(t, starts)
        return starts

    def finish(self) -> None:
        """End of run: a partial softsync group is applied (its last row gets the apply flag)."""
        if self.pending:
            self._apply_pending(self.rows[self.pending[-1]].t_arrive)

    # ------------------------------------------------------------------------------------------- helpers
    def _settle(self, t: float, starts: list[tuple[int, int]]) -> None:
        """After an arrival or a failure: release what the bound allows; end a finished warm start."""
        self._release(t, starts)
        warming = self.warm and self.limit == self.warm < self.num_steps  # a warm start as long as the run never ends
        if warming and not self.in_flight and not self.held:
            self._join(t, starts)

    def _start(self, w: int, starts: list[tuple[int, int]]) -> None:
        if self.started >= self.limit or w in self.dropped:
            return
        s = self.next_step[w]
        self.next_step[w] += 1
        self.started += 1
        self.in_flight.add(w)
        starts.append((w, s))

    def _join(self, t: float, starts: list[tuple[int, int]]) -> None:
        """Warm start over: the other workers fetch worker 0's parameters, then everyone computes."""
        self.limit = self.num_steps
        for w in range(1, self.K):
            self.read[w] = self.version
            self.rows.append(Row.fetch_only(w, self.version, t))
        for w in range(self.K):
            self._start(w, starts)

    def _release(self, t: float, starts: list[tuple[int, int]]) -> None:
        """Apply held pushes the staleness bound allows (alone, or mutually blocking ones together)."""
        while self.held:
            order = sorted(self.held, key=lambda w: self.held[w])
            if self.s < 0:
                self._apply_group(order[:1], t, starts)
                continue
            unfinished = set(self.held) | self.in_flight
            old = {j for j in unfinished if self.read[j] <= self.version - self.s}
            if old and old <= set(self.held):
                self._apply_group([w for w in order if w in old], t, starts)
                continue
            free = [w for w in order if not (old - {w})]
            if not free:
                return
            self._apply_group(free[:1], t, starts)

    def _apply_group(self, workers: list[int], t: float, starts: list[tuple[int, int]]) -> None:
        fetching = []
        for i, w in enumerate(workers):
            t_arrive, s = self.held.pop(w)
            fetch_due = (s + 1) % self.n_fetch == 0
            last = i == len(workers) - 1
            fetch = Fetch.ON_APPLY if fetch_due else Fetch.NONE
            self.rows.append(Row(w, s, True, last, fetch, self.read[w], self.version, t_arrive, t))
            if fetch_due:
                fetching.append(w)
        self.version += 1
        for w in fetching:
            self.read[w] = self.version
        for w in workers:
            self._start(w, starts)

    def _apply_pending(self, t: float) -> None:
        for r in self.pending:
            self.rows[r] = self.rows[r]._replace(v_apply=self.version, t_apply=t)
        last = self.pending[-1]
        self.rows[last] = self.rows[last]._replace(apply=True)
        self.version += 1
        self.pending = []
