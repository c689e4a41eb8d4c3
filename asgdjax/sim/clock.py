"""The virtual clock: drive the protocol state machine in virtual seconds, the in-flight step that reaches
the server first arriving next.

What a step costs: its compute time (the delay model's draw). What the server costs: one FIFO queue, as the
real coordinator is: an arrival is taken at max(t + latency, server free) and holds it for `service` seconds
plus `apply_seconds` per update it applies. `latency` and `service` are the coordinator's notice and host
time per finished step, which asgdjax's runtime spends on every step, Downpour's local ones included (it
records each and dispatches the next); profiles of the paper's hardware, where local steps never leave the
GPU client, set both to 0 and charge the server through `apply_seconds` and the links. What communication costs (Paine et al.
2013's regime, where n_fetch = n_push = n_sync amortises moving the parameters): a push crosses the
worker's device -> host link (latency + bytes / bandwidth, private to the worker) and then the server's
network link (shared by every worker: a FIFO queue per direction); a fetch crosses them back before the
worker's next step can start. Downpour's purely local steps touch neither. With every cost 0 this is
exactly the event loop of a plain asynchronous schedule. A worker with no other in flight (the warm start)
runs its step, latency and service times `solo` times as long (fitted from a calibration run's warm start:
on a shared host a lone worker and the coordinator do not compete for cores).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from asgdjax.core.protocol import Protocol
from asgdjax.core.trace import Fetch, Row
from asgdjax.delays import StepTimes

COMPUTED, UPLINK, ARRIVED = 0, 1, 2  # event kinds, in the order a pushing step goes through them


class VirtualClock:
    def __init__(self, protocol: Protocol, times: StepTimes, failures: Iterable[tuple[int, int]] = ()):
        self.protocol, self.times, self.model = protocol, times, times.model
        self.failures = set(failures)
        self.heap: list[tuple[float, int, int, int]] = []  # (time, worker, step, kind)
        self.server_free = self.up_free = self.down_free = 0.0
        self.comm = self.model.communicates

    def run(self, start: float = 0.0) -> list[Row]:
        """Every step to the end of the run, from virtual time `start` (a resumed protocol: its restart)."""
        self.server_free = self.up_free = self.down_free = start
        self._start(self.protocol.begin(), {}, start)
        while self.heap:
            t, w, s, kind = heapq.heappop(self.heap)
            if kind == COMPUTED and self.comm and (w, s) not in self.failures and self.protocol.pushes(w, s):
                self._push(t + self.model.worker_transfer(), w, s, UPLINK)
            elif kind == UPLINK:  # the server's link, one payload at a time, then its latency
                self.up_free = max(t, self.up_free) + self.model.server_transfer()
                self._push(self.up_free + self.model.server_latency, w, s, ARRIVED)
            else:
                self._arrive(t, w, s)
        if self.protocol.held:  # cannot happen: with nothing in flight every held push is releasable
            raise RuntimeError("schedule deadlock: held workers with nothing in flight")
        self.protocol.finish()
        return self.protocol.rows

    def _arrive(self, t: float, w: int, s: int) -> None:
        first = len(self.protocol.rows)
        if (w, s) in self.failures:
            self.failures.discard((w, s))
            starts = self.protocol.fail(w, s, t, "injected failure")
        else:
            starts = self.protocol.arrive(w, s, t)
        rows = self.protocol.rows[first:]
        done = t
        m = self.model
        if m.latency or m.service or (self.comm and any(r.push or r.fetch for r in rows)):
            applies = sum(1 for r in rows if r.apply)
            f = m.solo if not self.heap else 1.0  # nothing else in flight: this worker is alone
            taken = max(t + f * m.latency, self.server_free)
            done = self.server_free = taken + f * m.service + applies * m.apply_seconds
        fetched = {r.worker for r in rows if r.fetch == Fetch.NOW or (r.fetch == Fetch.ON_APPLY and _applied(r))}
        self._start(starts, {v: self._fetch(done) for v in sorted(fetched)} if self.comm else {}, done)

    def _fetch(self, done: float) -> float:
        """When the parameters sent at `done` reach a worker: the server's link (a queue), then the latencies
        and the worker's own link."""
        self.down_free = max(done, self.down_free) + self.model.server_transfer()
        return self.down_free + self.model.server_latency + self.model.worker_transfer()

    def _start(self, starts: list[tuple[int, int]], ready: dict[int, float], t: float) -> None:
        alone = len(starts) == 1 and not self.heap and self.model.solo != 1.0
        for w, s in starts:
            begin = ready.get(w, t)
            self._push(begin + self.times.time(w, s) * (self.model.solo if alone else 1.0), w, s, COMPUTED)

    def _push(self, t: float, w: int, s: int, kind: int) -> None:
        heapq.heappush(self.heap, (t, w, s, kind))


def _applied(row: Row) -> bool:
    """A row whose push was applied within the same arrival (held SSP pushes and plain A-SGD pushes)."""
    return row.v_apply >= 0
