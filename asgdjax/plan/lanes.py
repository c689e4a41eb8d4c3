"""Lanes: one simulated training run per (candidate, seed) on the planner's clock, advanced in clock time
and resumable, so successive halving pays each rung only the time it adds. Candidates that share a
compiled program share one Simulator: learning rate, momentum, the learning-rate schedule's length and
(among the `rules` the search names) the staleness rule are its data, so one program serves every
candidate of a worker count and protocol."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from asgdjax.core.protocol import ProtocolSpec
from asgdjax.core.sampling import Sampler
from asgdjax.core.trace import Trace
from asgdjax.errors import ConfigError
from asgdjax.plan.halving import Score
from asgdjax.plan.space import Candidate, ProtocolChoice
from asgdjax.predict.calibration import Calibration
from asgdjax.predict.predict import sim_config
from asgdjax.predict.targets import gradient_times
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
STAGES = (1000, 2000, 5000)  # test examples scored (a fixed random order; whole evaluation batches) before the rest
PROBE_SIGMAS = 4.6  # scored examples this many sigmas below the target: the whole split is no hit either


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
        self.stages = _stages(self.data)
        self._lanes: dict[tuple[Candidate, int], Lane] = {}
        self._sims: dict[tuple, Simulator] = {}
        self._schedules: dict[tuple, Trace] = {}
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

    def _schedule(self, c: Any, candidate: Candidate, seed: int, steps: int | None) -> Trace:
        """The schedule (cached: it depends on workers, protocol and seed, not on the rule or step size)."""
        key = (candidate.workers, candidate.protocol, seed, steps)
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
            state = sim.init(self.task.init(k.init), hp)
            sampler = sampler_from_config(c, self.num_train)
            self._lanes[(candidate, seed)] = Lane(candidate, c, trace, sim, sampler, k.data, state, evals, hp)
        return self._lanes[(candidate, seed)]

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

    def advance(self, candidate: Candidate, seconds: float, seed: int = 0) -> Score:
        """Continue the lane to `seconds` on its clock, evaluating on the way, and score it. A lane stops for
        good once it reaches the target (its score cannot change: time to target is its first hit) or
        diverges, so a good candidate costs only the time it takes to get there."""
        lane = self.lane(candidate, seed)
        times = np.maximum.accumulate(np.asarray(lane.trace.t_arrive))
        stop = int(np.searchsorted(times, seconds, "right")) if seconds < self.budget else len(lane.trace)
        if stop > lane.event and not (lane.diverged or self._hit(lane)):
            self._run(lane, stop)
        return self.score(lane)

    def _hit(self, lane: Lane) -> bool:
        return any(acc >= self.target for _, acc, _ in lane.curve)

    def _run(self, lane: Lane, stop: int) -> None:
        """Replay the lane's events up to `stop` in one simulator run, evaluating at each evaluation point
        (and at `stop`); the run ends early, keeping its state, when the lane reaches the target or diverges."""
        cuts = lane.evals[(lane.evals > lane.event) & (lane.evals < stop)].tolist() + [stop]
        wanted, losses, done = set(cuts), [], [lane.event]
        grads, times = np.cumsum(lane.trace.step >= 0), gradient_times(lane.trace)
        limit = float(lane.config.max_train_loss)

        def at_call_end(end: int, state: Any, chunk_losses: Any) -> None:  # losses padded to the call's length
            mask = lane.trace.step[done[0] : end] >= 0
            losses.append(np.asarray(chunk_losses)[: len(mask)][mask])
            done[0] = end
            if end not in wanted:
                return
            got = np.concatenate(losses)
            losses.clear()
            lane.diverged = bool(len(got) and not (np.all(np.isfinite(got)) and got.mean() <= limit))
            lane.state, lane.event = state, end
            acc = self._accuracy(state.server.params, full=end == stop)
            g = int(grads[end - 1]) if end else 0
            if g and acc is not None:
                lane.curve.append((g, acc, float(times[g - 1])))
            if lane.diverged or self._hit(lane):
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

    def _accuracy(self, params: Any, *, full: bool) -> float | None:
        """Test accuracy on the whole split, scored in parts (STAGES: the first 1,000 examples of a fixed
        random order, then up to 2,000, 5,000, all): None as soon as the examples scored so far put the
        run too far below the target for this evaluation to be its first hit (most of a search's
        evaluations are such), so a miss costs a tenth of the split and a hit no more than the whole.
        `full`: score the whole split (a rung's last evaluation, which ranks the candidates)."""
        parts = self.stages or [self.data]
        n = sum(len(p["test_y"]) for p in parts)
        correct = seen = 0
        for part in parts:
            m = len(part["test_y"])
            correct += round(float(self.task.evaluate(params, part)["test_accuracy"]) * m)
            seen += m
            if not full and seen < n and correct / seen < self.target - probe_margin(self.target, seen, n):
                return None
        return correct / n

    def score(self, lane: Lane) -> Score:
        hit = next((t for _, acc, t in lane.curve if acc >= self.target), None)
        best = max((acc for _, acc, _ in lane.curve), default=0.0)
        done = int(np.sum(lane.trace.step[: lane.event] >= 0))
        return Score(hit, best if math.isfinite(best) else 0.0, done, lane.diverged)

    def curve(self, candidate: Candidate, seed: int = 0) -> list[tuple[int, float, float]]:
        return list(self.lane(candidate, seed).curve)

    def simulated_gradients(self) -> int:
        """Gradients computed over every lane so far (what the search cost)."""
        return sum(int((lane.trace.step[: lane.event] >= 0).sum()) for lane in self._lanes.values())


def probe_margin(target: float, seen: int, total: int) -> float:
    """How far below the target the first `seen` of `total` test examples (a random subset) may score and
    the whole split still reach it: PROBE_SIGMAS standard deviations of the hypergeometric proportion at the
    target (0.025 for 1,000 of 10,000 at 97%; 0.07 at 50%, where accuracy is noisier; 0 once all are
    scored), so a hit is missed with probability about 2e-6 per evaluation."""
    t = min(max(target, 0.0), 1.0)
    spread = math.sqrt(max(t * (1.0 - t), 0.25 / seen) / seen * (1.0 - seen / total))
    return PROBE_SIGMAS * spread


def _stages(data: Any) -> list:
    """The resident test split cut into parts of a fixed random order (a prefix can be easier than the
    rest: MNIST's first half), ending at each of STAGES and then the whole split; [] when there is no
    resident test split or it is too small for a first stage under a quarter of it."""
    if not isinstance(data, dict) or "test_y" not in data or len(data["test_y"]) < 4 * STAGES[0]:
        return []
    n = len(data["test_y"])
    order = np.random.default_rng(0).permutation(n)
    ends = [s for s in STAGES if s < n] + [n]
    parts, start = [], 0
    for end in ends:
        pick = np.sort(order[start:end])
        parts.append({**data, "test_x": data["test_x"][pick], "test_y": data["test_y"][pick]})
        start = end
    return parts


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
