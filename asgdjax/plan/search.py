"""The search: a successive-halving bracket per worker count, then each bracket's winner over seeds.

Brackets run from the fewest workers up, and once a worker count reaches the target in T clock seconds,
a bracket with more workers trains only to BEAT_MARGIN * T: on the front of time against workers, more
workers earn a place only by being faster than fewer, so time past that is spent on rows no one would
choose (the 2-core MNIST plan: the 8-worker bracket never reaches 97% and used to train its candidates
to the whole budget)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from asgdjax.plan.front import FrontRow, pareto_front, recommend
from asgdjax.plan.halving import Rung, Score, default_rungs, rung_times, successive_halving
from asgdjax.plan.lanes import Clocks, Lanes, default_budget
from asgdjax.plan.space import Candidate, ProtocolChoice, Space

BEAT_MARGIN = 1.25  # a larger worker count trains to this multiple of the best time so far (near-ties stay measured)


class Plan(NamedTuple):
    """Everything the planner found (plan.json holds it)."""

    budget: float  # clock seconds each candidate may train
    brackets: dict[int, list[Rung]]  # per worker count: its halving rungs
    rows: list[FrontRow]  # per worker count: its winner over seeds
    front: list[FrontRow]
    recommended: FrontRow
    wall_seconds: float
    simulated_gradients: int  # over every lane: the search's cost in gradients
    notes: tuple[str, ...] = ()  # what the user should know about this plan's answer


def search(
    config: Any,
    clocks: Clocks,
    space: Space,
    *,
    target: float,
    budget: float = 0.0,
    eta: int = 3,
    rungs: int = 0,
    seeds: int = 3,
    evals: int = 20,
    progress: Callable[[str], None] = lambda s: None,
) -> Plan:
    """Successive halving per worker count on simulated training, then the winners over `seeds` seeds.
    rungs=0: `default_rungs` of each bracket's candidate count."""
    t0 = time.time()
    plain = ProtocolChoice("async")
    protocol = plain if plain in space.protocols else space.protocols[0]
    budget = budget or default_budget(config, clocks, max(space.workers), protocol, progress=progress)
    lanes = Lanes(config, clocks, budget=budget, target=target, evals=evals, rules=space.rules)
    brackets: dict[int, list[Rung]] = {}
    rows: list[FrontRow] = []
    notes: list[str] = []
    for k in sorted(space.workers):
        beat = min((r.seconds for r in rows if r.seconds is not None), default=math.inf)
        seconds = min(budget, BEAT_MARGIN * beat)
        progress(f"{k} workers: {len(space.candidates(k))} candidates" + _beating(seconds, beat, budget))
        start = warm_start_end(lanes, space.candidates(k))
        n_rungs = rungs or default_rungs(len(space.candidates(k)), eta)
        times = rung_times(seconds, eta, n_rungs, start=start)
        if times != rung_times(seconds, eta, n_rungs):  # the warm start moved them
            progress(f"rungs divide the {seconds - start:.4g} s after the warm start, which ends at {start:.4g} s")
        rung_list = successive_halving(space.candidates(k), capped(lanes), times, eta=eta, progress=progress)
        brackets[k] = rung_list
        best = rung_list[-1].scores[0][0]
        lanes.release_prefixes()
        for c, _ in rung_list[0].scores:
            if c != best:
                lanes.release(c)
        scores = over_seeds(lanes, best, seconds, seeds)
        rows.append(FrontRow(best, scores, lanes.lane(best).config.steps, trained_seconds=seconds))
        for seed in range(1, seeds):
            lanes.release(best, seed)
        lanes.release_prefixes()
        progress(f"{k} workers: best {best.name}: {_describe(rows[-1])}")
        own = lanes.warm_start_end(best)  # the row's own warm start (several may be searched)
        if k > 1 and rows[-1].seconds is not None and rows[-1].seconds <= own:
            flag = "--config.warm_start_steps" if best.warm_start is None else "--warm_starts"
            notes.append(
                f"{k} workers reach the target at {rows[-1].seconds:.4g} s, inside the warm start (worker 0 trains "
                f"alone until {own:.4g} s): that row measures no asynchronous training; raise --target or lower "
                f"{flag}"
            )
    front, best_row = pareto_front(rows), recommend(rows)
    wall = time.time() - t0
    return Plan(budget, brackets, rows, front, best_row, wall, lanes.simulated_gradients(), tuple(notes))


def warm_start_end(lanes: Lanes, candidates: list[Candidate]) -> float:
    """The clock second after which the bracket's candidates can differ, where its rungs begin: the latest
    over protocols (they differ in when a warm start ends: Downpour's solo worker also pushes and fetches)
    of each protocol's shortest warm start searched (a longer one differs from it once it ends)."""
    ends: dict[ProtocolChoice, float] = {}
    for c in {(c.protocol, c.warm_start): c for c in candidates}.values():
        ends[c.protocol] = min(ends.get(c.protocol, math.inf), lanes.warm_start_end(c))
    return max(ends.values(), default=0.0)


def over_seeds(lanes: Lanes, best: Candidate, seconds: float, seeds: int) -> tuple[Score, ...]:
    """The bracket winner's score per seed, up to the first seed that misses the target within `seconds`:
    a row reaches the target only if every seed does, so the seeds after a miss would not change it."""
    scores: list[Score] = []
    for seed in range(seeds):
        scores.append(lanes.advance(best, seconds, seed))
        if scores[-1].seconds_to_target is None:
            break
    return tuple(scores)


def capped(lanes: Lanes) -> Callable[[Candidate, float], Score]:
    """lanes.advance, never past the bracket's best time to target so far: a candidate that has not
    reached the target by then cannot be the bracket's fastest, so its later clock time is not spent."""
    best = [math.inf]

    def advance(candidate: Candidate, seconds: float) -> Score:
        score = lanes.advance(candidate, min(seconds, best[0]))
        if score.seconds_to_target is not None:
            best[0] = min(best[0], score.seconds_to_target)
        return score

    return advance


def _beating(seconds: float, beat: float, budget: float) -> str:
    if seconds >= budget:
        return ""
    return f" to {seconds:.4g} clock seconds ({BEAT_MARGIN:g}x the {beat:.4g} s fewer workers take)"


def _describe(row: FrontRow) -> str:
    if row.seconds is None:
        last = len(row.scores) - 1
        missed = (
            f"seed {last} did not reach the target" if last else "the bracket's run (seed 0) did not reach the target"
        )
        hits = ", ".join(f"{s.seconds_to_target:.4g}" for s in row.scores[:-1])
        seeds = "seed 0" if last == 1 else f"seeds 0-{last - 1}"
        earlier = f"; {seeds} did, at {hits} s" if last else ""
        return (
            f"{missed} within {row.trained_seconds:.4g} s (its accuracy {row.scores[-1].accuracy:.4f} there{earlier})"
        )
    return f"{row.seconds:.4g} +- {row.spread:.2g} clock seconds to target over {len(row.scores)} seed(s)"
