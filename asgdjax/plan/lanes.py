"""Lanes: one simulated training run per (candidate, seed) on the planner's clock, advanced in clock time
and resumable, so successive halving pays each rung only the time it adds. Candidates that share a
compiled program share one Simulator: learning rate, momentum, the learning-rate schedule's length and
(among the `rules` the search names) the staleness rule are its data, so one program serves every
candidate of a worker count and protocol. Candidates that differ only in a rule from
`asgdjax.rules.FRESH_IDENTITY` are one run until the first stale gradient (the paper's warm start, where
worker 0 trains alone, is such a prefix): the first of them to get there leaves its state, and the others
start from it instead of computing it again."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from asgdjax.core.protocol import ProtocolSpec
from asgdjax.core.sampling import Sampler
from asgdjax.core.trace import Trace
from asgdjax.errors import ConfigError
from asgdjax.plan.halving import Score
from asgdjax.plan.probe import Probe
from asgdjax.plan.space import Candidate, ProtocolChoice
from asgdjax.predict.calibration import Calibration
from asgdjax.predict.predict import sim_config
from asgdjax.predict.targets import gradient_times
from asgdjax.rules import FRESH_IDENTITY
from asgdjax.sim import Simulator
from asgdjax.sweep.grid import Point, apply
from asgdjax.train.build import (
    RULE_INDEX,
    SCHEDULE_UPDATES,
    hparams_from_config,
    keys,
    sampler_from_config,
    schedule_from_config,
    server_factory,
)
from asgdjax.train.run import prepare
from asgdjax.train.task import device_data
from asgdjax.train.validate import validate

MAX_STEPS_FACTOR = 16  # a lane runs at most this many times the config's steps to fill the budget


@dataclasses.dataclass(frozen=True)
class Clocks:
    """The clock of each (worker count, protocol): measured per pair, since workers sharing a machine slow
    each other and the runtime spends different host time per step under each protocol (Downpour's local
    steps pass through the coordinator too); or one calibration or hardware profile for all."""

    measured: dict[tuple[int, ProtocolChoice], Calibration] = dataclasses.field(default_factory=dict)
    default: Calibration | None = None

    def for_run(self, workers: int, protocol: ProtocolChoice) -> Calibration:
        cal = self.measured.get((workers, protocol), self.default)
        if cal is None:
            have = ", ".join(f"{k} x {p.name}" for k, p in sorted(self.measured, key=lambda kp: (kp[0], kp[1].name)))
            raise ConfigError(f"no clock for {workers} workers under {protocol.name}; calibrated: {have or 'none'}")
        return cal


class _Settled(Exception):
    """A lane reached its target or diverged: its simulator run ends at that evaluation."""


@dataclasses.dataclass
class Lane:
    """One candidate's simulated run: its config, schedule, state and evaluations so far."""

    candidate: Candidate
    config: Any
    trace: Trace
    sim: Simulator
    sampler: Sampler
    data_key: Any
    state: Any
    evals: np.ndarray  # event offsets after which the lane evaluates
    hparams: dict  # learning rate, momentum and the schedule's length: the simulator's data
    curve: list = dataclasses.field(default_factory=list)  # (gradients, test accuracy, clock seconds)
    event: int = 0
    diverged: bool = False
    pending: list = dataclasses.field(default_factory=list)  # training losses since the last evaluation
    inherited: int = 0  # gradients of a shared prefix this lane started from (computed by another lane)
    seed: int = 0
    fresh_end: int = 0  # events before the first stale gradient: the prefix its rule siblings share (0: none)


class Prefix(NamedTuple):
    """A lane's state at an event before its first stale gradient, for its siblings to start from."""

    event: int
    state: Any  # a copy (simulator calls donate their state)
    curve: list
    diverged: bool
    pending: list
    extra_eval: bool  # its last evaluation was a rung's end, not one of the lanes' evaluation points


class Lanes:
    """Simulated runs of candidates derived from `config`, on `clocks`, each up to `budget` clock seconds."""

    def __init__(
        self,
        config: Any,
        clocks: Clocks,
        *,
        budget: float,
        target: float,
        evals: int = 200,
        steps: int = 0,
        rules: tuple[str, ...] = (),
    ) -> None:
        """steps > 0: every lane trains exactly that many gradients (e.g. a config file's own run) instead of
        the gradients its workers compute within the budget. rules: the rules candidates may name, compiled
        into each simulator together (`asgdjax.rules.choose`); a candidate's rule outside them gets its own."""
        self.config, self.clocks, self.budget, self.target, self.evals = config, clocks, budget, target, evals
        self.steps, self.rules = steps, tuple(rules)
        setup = prepare(config)
        self.task, self.num_train = setup.task, setup.dataset.num_train
        self.data = device_data(setup.dataset)
        self.probe = Probe(self.task, self.data, target)
        self._lanes: dict[tuple[Candidate, int], Lane] = {}
        self._sims: dict[tuple, Simulator] = {}
        self._schedules: dict[tuple, Trace] = {}
        self._params: dict[int, Any] = {}
        self._prefixes: dict[tuple, Prefix] = {}  # per sibling group (`_siblings`): the furthest shared state
        self._plan: tuple[str, int] | None = None  # the first simulator's (strategy, chunk)

    # ------------------------------------------------------------------------------------------- configs
    def config_of(self, candidate: Candidate, seed: int = 0) -> Any:
        """The mode=sim config of `candidate` on its clock, with steps = the gradients of the budget."""
        c = apply(self.config, Point(candidate.overrides()))
        c.seed = self.config.seed + seed
        c = sim_config(c, self.clocks.for_run(candidate.workers, candidate.protocol), candidate.workers, c.eval_every)
        validate(c)
        c.steps = self.steps or self._steps(c, candidate, seed)
        c.eval_every = c.log_every = max(1, c.steps // self.evals)
        return c

    def _steps(self, c: Any, candidate: Candidate, seed: int) -> int:
        """Gradients this protocol's workers compute within the budget (from a schedule that runs past it)."""
        trace = self._schedule(c, candidate, seed, None)
        return max(candidate.workers, int(np.searchsorted(gradient_times(trace), self.budget, "right")))

    def warm_start_end(self, candidate: Candidate) -> float:
        """Clock seconds at which the warm start's solo gradients end (0 without one). Until then every
        candidate of a worker count trains worker 0 alone, so a rung that ends there tells protocols and
        rules apart by nothing (Paine et al. 2013's warm start: 50 of a 300 s run on their hardware)."""
        c = self.config_of(candidate)
        if candidate.workers == 1 or c.warm_start_steps <= 0:
            return 0.0
        times = gradient_times(self._schedule(c, candidate, 0, c.steps))
        return float(times[min(c.warm_start_steps, len(times)) - 1])

    def _schedule(self, c: Any, candidate: Candidate, seed: int, steps: int | None) -> Trace:
        """The schedule (cached: it depends on workers, protocol, warm start and seed, not on the rule or step
        size)."""
        key = (candidate.workers, candidate.protocol, candidate.warm_start, seed, steps)
        if key not in self._schedules:
            c = copy.deepcopy(c)
            if steps is None:  # long enough to pass the budget
                c.steps = self.config.steps
                while True:
                    trace = schedule_from_config(c)
                    times = gradient_times(trace)
                    if times[-1] > self.budget or c.steps >= MAX_STEPS_FACTOR * self.config.steps:
                        break
                    c.steps *= 2
            else:
                c.steps = steps
                trace = schedule_from_config(c)
            self._schedules[key] = trace
        return self._schedules[key]

    # --------------------------------------------------------------------------------------------- lanes
    def lane(self, candidate: Candidate, seed: int = 0) -> Lane:
        if (candidate, seed) not in self._lanes:
            c = self.config_of(candidate, seed)
            trace = self._schedule(c, candidate, seed, c.steps)
            updates = int(trace.meta.get("lr_schedule_updates", trace.num_updates))
            sim = self._simulator(c, candidate, updates)
            hp, k = {**hparams_from_config(c), SCHEDULE_UPDATES: updates}, keys(c)
            if candidate.rule in self.rules:
                hp[RULE_INDEX] = self.rules.index(candidate.rule)
            grads = np.cumsum(trace.step >= 0)
            prev = np.concatenate([[0], grads[:-1]])
            evals = np.flatnonzero(grads // c.eval_every > prev // c.eval_every) + 1
            state = sim.init(self._initial_params(seed, k.init), hp)
            sampler = sampler_from_config(c, self.num_train)
            lane = Lane(candidate, c, trace, sim, sampler, k.data, state, evals, hp, seed=seed)
            lane.fresh_end = _fresh_events(trace) if self._siblings(candidate, seed) else 0
            self._lanes[(candidate, seed)] = lane
        return self._lanes[(candidate, seed)]

    def _initial_params(self, seed: int, key: Any) -> Any:
        """The task's initial parameters of a seed (every candidate of that seed starts from them)."""
        if seed not in self._params:
            self._params[seed] = self.task.init(key)
        return self._params[seed]

    def _siblings(self, candidate: Candidate, seed: int) -> tuple | None:
        """The key of the candidates whose runs equal this one's until the first stale gradient (the same
        compiled program, schedule, data and step sizes; a stateless rule that passes fresh gradients
        through), or None when its rule is not such a rule."""
        if candidate.rule not in FRESH_IDENTITY or candidate.rule not in self.rules:
            return None
        return (candidate._replace(rule=""), seed)

    def _simulator(self, c: Any, candidate: Candidate, updates: int) -> Simulator:
        """One Simulator (one compiled program) per workers x protocol (the rule, the schedule's length and
        the learning rate are data: `RULE_INDEX`, `SCHEDULE_UPDATES`; `updates` only sets the factory's
        default). The first one measures the gradient and picks the strategy and chunk; the others reuse
        its choice."""
        shared = candidate.rule in self.rules
        key = (candidate.workers, candidate.protocol, self.rules if shared else candidate.rule)
        if key not in self._sims:
            spec = ProtocolSpec.from_config(c)
            strategy, chunk = self._plan or (c.sim_strategy, c.sim_chunk)
            factory = server_factory(c, updates, rules=self.rules if shared else ())
            sim = Simulator(self.task, factory, spec, strategy=strategy, chunk=chunk)
            sim.plan(self.task.init(keys(c).init), self.data, c.batch_size)
            self._plan = self._plan or (sim.strategy, sim.C)
            self._sims[key] = sim
        return self._sims[key]

    def release(self, candidate: Candidate, seed: int = 0) -> None:
        """Free a lane's state (a candidate halving dropped)."""
        lane = self._lanes.get((candidate, seed))
        if lane is not None:
            lane.state = None

    def release_prefixes(self) -> None:
        """Free the shared prefixes (once every candidate that could start from them has started)."""
        self._prefixes.clear()

    def advance(self, candidate: Candidate, seconds: float, seed: int = 0) -> Score:
        """Continue the lane to `seconds` on its clock, evaluating on the way, and score it. A lane stops for
        good once it reaches the target (its score cannot change: time to target is its first hit) or
        diverges, so a good candidate costs only the time it takes to get there."""
        lane = self.lane(candidate, seed)
        times = np.maximum.accumulate(np.asarray(lane.trace.t_arrive))
        stop = int(np.searchsorted(times, seconds, "right")) if seconds < self.budget else len(lane.trace)
        self._adopt(lane, stop)
        if stop > lane.event and not (lane.diverged or self._hit(lane)):
            self._run(lane, stop)
        return self.score(lane)

    def _adopt(self, lane: Lane, stop: int) -> None:
        """Start `lane` from its siblings' shared prefix when that is further on and not past `stop` (nor
        ending at an evaluation this lane would not make: a sibling's rung end that is not this stop)."""
        key = self._siblings(lane.candidate, lane.seed)
        prefix = self._prefixes.get(key) if key is not None else None
        if prefix is None or not lane.event < prefix.event <= stop or (prefix.extra_eval and prefix.event != stop):
            return
        lane.state, lane.event = _copy(prefix.state), prefix.event
        lane.curve, lane.diverged, lane.pending = list(prefix.curve), prefix.diverged, list(prefix.pending)
        lane.inherited = int(np.sum(lane.trace.step[: prefix.event] >= 0))

    def _leave(self, lane: Lane, event: int, state: Any, pending: list, *, extra_eval: bool) -> None:
        """Keep `state` (at `event`, not past the first stale gradient) for the lane's siblings."""
        key = self._siblings(lane.candidate, lane.seed)
        if key is None or event > lane.fresh_end:
            return
        have = self._prefixes.get(key)
        if have is None or have.event < event:
            curve, diverged = list(lane.curve), lane.diverged
            self._prefixes[key] = Prefix(event, _copy(state), curve, diverged, list(pending), extra_eval)

    def _hit(self, lane: Lane) -> bool:
        return any(acc >= self.target for _, acc, _ in lane.curve)

    def _run(self, lane: Lane, stop: int) -> None:
        """Replay the lane's events up to `stop` in one simulator run, evaluating at each evaluation point
        (and at `stop`); the run ends early, keeping its state, when the lane reaches the target or diverges.
        On the way it leaves its state at the end of its fresh prefix (or at `stop`, if sooner) for its
        siblings (`_leave`)."""
        share = min(lane.fresh_end, stop) if lane.event < lane.fresh_end else -1
        cuts = lane.evals[(lane.evals > lane.event) & (lane.evals < stop)].tolist() + [stop]
        wanted, done = set(cuts), [lane.event]
        cuts = sorted(wanted | ({share} if share > 0 else set()))
        losses, lane.pending = lane.pending, []
        grads, times = np.cumsum(lane.trace.step >= 0), gradient_times(lane.trace)
        limit = float(lane.config.max_train_loss)
        on_schedule = set(lane.evals.tolist())

        def at_call_end(end: int, state: Any, chunk_losses: Any) -> None:  # losses padded to the call's length
            mask = lane.trace.step[done[0] : end] >= 0
            losses.append(np.asarray(chunk_losses)[: len(mask)][mask])
            done[0] = end
            if end not in wanted:
                if end == share:
                    self._leave(lane, end, state, losses, extra_eval=False)
                return
            got = np.concatenate(losses)
            losses.clear()
            lane.diverged = bool(len(got) and not (np.all(np.isfinite(got)) and got.mean() <= limit))
            lane.state, lane.event = state, end
            acc = self.probe.accuracy(state.server.params, full=end == stop)
            g = int(grads[end - 1]) if end else 0
            if g and acc is not None:
                lane.curve.append((g, acc, float(times[g - 1])))
            settled = lane.diverged or self._hit(lane)
            if end == share or (settled and end < share):
                self._leave(lane, end, state, [], extra_eval=end not in on_schedule)
            if settled:
                raise _Settled

        with contextlib.suppress(_Settled):
            lane.sim.run(
                lane.state,
                lane.trace.slice(stop),
                self.data,
                lane.hparams,
                lane.sampler,
                lane.data_key,
                start_event=lane.event,
                cuts=tuple(cuts),
                callback=at_call_end,
            )

    def score(self, lane: Lane) -> Score:
        """Time to target (first hit within the budget), or else the accuracy of its last evaluation: the
        one where its training so far ends, which scores the whole split (the probe's earlier points may
        stop short). A lane's last events can arrive past the budget (its gradient count comes from the
        budget, its clock from the run: a Downpour run's last pushes); a hit there is not within it."""
        hit = next((t for _, acc, t in lane.curve if acc >= self.target and t <= self.budget), None)
        last = lane.curve[-1][1] if lane.curve else 0.0
        done = int(np.sum(lane.trace.step[: lane.event] >= 0))
        return Score(hit, last if math.isfinite(last) else 0.0, done, lane.diverged)

    def curve(self, candidate: Candidate, seed: int = 0) -> list[tuple[int, float, float]]:
        return list(self.lane(candidate, seed).curve)

    def simulated_gradients(self) -> int:
        """Gradients computed over every lane so far (what the search cost)."""
        return sum(int((lane.trace.step[: lane.event] >= 0).sum()) - lane.inherited for lane in self._lanes.values())


def _fresh_events(trace: Trace) -> int:
    """Events before the first gradient pushed stale (staleness v_apply - v_read > 0): until then every
    rule in FRESH_IDENTITY leaves the run unchanged."""
    stale = np.flatnonzero(np.asarray(trace.push) & (np.asarray(trace.v_apply) > np.asarray(trace.v_read)))
    return int(stale[0]) if len(stale) else len(trace)


@jax.jit
def _copy(state: Any) -> Any:
    """A copy of a simulator state (the simulator donates the state it is given), in one dispatch."""
    return jax.tree.map(jnp.copy, state)


def default_budget(
    config: Any, clocks: Clocks, workers: int, protocol: ProtocolChoice, *, progress: Callable[[str], None] = print
) -> float:
    """Clock seconds the config's steps take with `workers` workers under `protocol` (the budget each
    candidate gets unless --budget says otherwise)."""
    c = apply(config, Point(protocol.overrides()))
    c = sim_config(c, clocks.for_run(workers, protocol), workers, config.eval_every)
    seconds = float(gradient_times(schedule_from_config(c))[-1])
    progress(f"budget: {seconds:.4g} clock seconds ({config.steps} gradients with {workers} workers, {protocol.name})")
    return seconds
