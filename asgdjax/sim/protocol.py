"""The server protocol as a state machine fed with arrivals: what the simulator's virtual clock and the
real runtime's coordinator both drive, so a run's trace means the same thing in either.

`begin()` says which (worker, step)s start; `arrive(w, s, t)` reports that worker w finished local step s
at time t and returns the steps to start now; every server decision is appended to `rows` (trace rows,
see asgdjax.sim.trace). Downpour clients push every `n_push` local steps and fetch every `n_fetch`; with
`group` > 1 the server applies every `group` pushes without making learners wait (n-softsync); otherwise a
push is applied on arrival unless the staleness bound `max_staleness` = s says wait: then the worker holds
until no other unfinished gradient would exceed staleness s, and mutually blocking workers are released
together as one averaged update (s = 0 is synchronous SGD). A held push is written to the trace when it is
applied (the waiting worker's parameters do not change, so its gradient is the same).
"""

from __future__ import annotations


class Protocol:
    def __init__(
        self,
        num_workers: int,
        num_steps: int,
        group: int = 1,
        max_staleness: int = -1,
        n_fetch: int = 1,
        n_push: int = 1,
        warm_start_steps: int = 0,
    ):
        self.K, self.num_steps, self.group, self.s = num_workers, num_steps, group, max_staleness
        self.n_fetch, self.n_push = n_fetch, n_push
        self.warm = min(warm_start_steps, num_steps) if num_workers > 1 else 0
        self.limit = self.warm or num_steps
        self.version = 0
        self.read = [0] * num_workers  # version each worker's local copy was fetched at
        self.next_step = [0] * num_workers
        self.started = 0
        self.in_flight: set[int] = set()
        self.held: dict[int, tuple[float, int]] = {}  # worker -> (t_arrive, step): pushed, waiting
        self.pending: list[int] = []  # softsync: row indices of pushes in the current group
        self.rows: list[list] = []
        self.dropped: set[int] = set()
        self.failures: list[dict] = []  # worker, step, time, error, dropped

    @property
    def done(self) -> bool:
        return not self.in_flight and not self.held and self.limit == self.num_steps

    def begin(self) -> list[tuple[int, int]]:
        """The steps that start now: worker 0 alone during a warm start, else every worker."""
        starts: list[tuple[int, int]] = []
        for w in range(1 if self.warm and self.limit == self.warm else self.K):
            self._start(w, starts)
        return starts

    def snapshot(self) -> dict:
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
            "rows": [list(r) for r in self.rows],
            "version": self.version,
            "read": list(self.read),
            "next_step": next_step,
            "started": started,
            "limit": self.limit,
            "dropped": sorted(self.dropped),
            "failures": list(self.failures),
        }

    def resume(self, snap: dict, t: float) -> None:
        """Continue from `snapshot()`: every worker restarts from the server's parameters (a fetch-only
        row each, which also drops unpushed local gradients); call begin() next."""
        self.rows = [list(r) for r in snap["rows"]]
        self.version, self.read = int(snap["version"]), [int(x) for x in snap["read"]]
        self.next_step, self.started = [int(x) for x in snap["next_step"]], int(snap["started"])
        self.limit, self.dropped = int(snap["limit"]), set(snap["dropped"])
        self.failures = list(snap["failures"])
        for w in range(self.K):
            if w not in self.dropped:
                self.read[w] = self.version
                self.rows.append([w, -1, False, False, 1, self.version, -1, t, t])

    def arrive(self, w: int, s: int, t: float) -> list[tuple[int, int]]:
        """Worker w finished local step s at time t; returns the (worker, step)s to start at time t."""
        if w not in self.in_flight or self.next_step[w] != s + 1:
            raise ValueError(f"unexpected arrival of worker {w} step {s}")
        self.in_flight.discard(w)
        starts: list[tuple[int, int]] = []
        last = self.started >= self.limit
        push = (s + 1) % self.n_push == 0 or last
        fetch_due = (s + 1) % self.n_fetch == 0
        if not push:
            if fetch_due:
                self.read[w] = self.version
            self.rows.append([w, s, False, False, 1 if fetch_due else 0, self.read[w], -1, t, t])
            self._start(w, starts)
        elif self.group > 1:  # softsync: join the group, fetch now, keep going
            self.pending.append(len(self.rows))
            self.rows.append([w, s, True, False, 1 if fetch_due else 0, self.read[w], -1, t, t])
            if len(self.pending) == self.group:
                self._apply_pending(t)
            if fetch_due:
                self.read[w] = self.version
            self._start(w, starts)
        else:
            self.held[w] = (t, s)
        self._release(t, starts)
        if self.warm and self.limit == self.warm and not self.in_flight and not self.held:
            self._join(t, starts)
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
            self.rows.append([w, -1, False, False, 1, self.version, -1, t, t])
            self._start(w, starts)
        self._release(t, starts)
        if self.warm and self.limit == self.warm and not self.in_flight and not self.held:
            self._join(t, starts)
        return starts

    def finish(self) -> None:
        """End of run: a partial softsync group is applied (its last row gets the apply flag)."""
        if self.pending:
            self._apply_pending(self.rows[self.pending[-1]][7])

    # ------------------------------------------------------------------------------------------- helpers
    def _start(self, w: int, starts: list) -> None:
        if self.started >= self.limit or w in self.dropped:
            return
        s = self.next_step[w]
        self.next_step[w] += 1
        self.started += 1
        self.in_flight.add(w)
        starts.append((w, s))

    def _join(self, t: float, starts: list) -> None:
        """Warm start over: the other workers fetch worker 0's parameters, then everyone computes."""
        self.limit = self.num_steps
        for w in range(1, self.K):
            self.read[w] = self.version
            self.rows.append([w, -1, False, False, 1, self.version, -1, t, t])
        for w in range(self.K):
            self._start(w, starts)

    def _release(self, t: float, starts: list) -> None:
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

    def _apply_group(self, workers: list[int], t: float, starts: list) -> None:
        fetching = []
        for i, w in enumerate(workers):
            t_arrive, s = self.held.pop(w)
            fetch_due = (s + 1) % self.n_fetch == 0
            last = i == len(workers) - 1
            self.rows.append([w, s, True, last, 2 if fetch_due else 0, self.read[w], self.version, t_arrive, t])
            if fetch_due:
                fetching.append(w)
        self.version += 1
        for w in fetching:
            self.read[w] = self.version
        for w in workers:
            self._start(w, starts)

    def _apply_pending(self, t: float) -> None:
        for r in self.pending:
            self.rows[r][6] = self.version
            self.rows[r][8] = t
        self.rows[self.pending[-1]][3] = True
        self.version += 1
        self.pending = []
