"""The planner's clocks, measured: short real async runs of each (workers, protocol) pair, several rounds of
them taken in turn across the pairs and pooled, cached in the workdir (calibration/<pair>/calibration.json,
each run in calibration/<pair>/round_<r>/)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from asgdjax.plan.space import ProtocolChoice
from asgdjax.predict.calibration import Calibration, calibrate_workdir, pooled
from asgdjax.predict.clock import calibration_run_config
from asgdjax.sweep.grid import Point, apply

Pair = tuple[int, ProtocolChoice]
UNSURE = 0.15  # rounds of one pair further apart than this (slowest over fastest - 1): say so


def calibrate_pairs(
    config: Any,
    pairs: Sequence[Pair],
    workdir: str,
    *,
    steps: int,
    rounds: int,
    say: Callable[[str], None],
    run: Callable[[Any, str], Any] | None = None,
) -> dict[Pair, Calibration]:
    """Each pair's clock: `rounds` real runs of `steps` gradients, made in turn over the pairs (round 1 of
    every pair, then round 2, ...) so each pair's runs spread across the whole calibration and a slow spell
    of the host touches every pair alike, then pooled. A pair whose calibration.json is in the workdir is
    reused, and so is each finished round of an interrupted calibration. `run(config, folder)` trains."""
    if run is None:
        from asgdjax.train import train

        run = lambda c, folder: train(c, folder, show_progress=False)  # noqa: E731
    done: dict[Pair, Calibration] = {}
    for pair in pairs:
        path = calibration_path(workdir, pair)
        if os.path.exists(path):
            say(f"{pair[0]} workers under {pair[1].name}: the calibration already in the workdir ({path})")
            done[pair] = Calibration.load(path)
    todo = [pair for pair in pairs if pair not in done]
    measured: dict[Pair, list[Calibration]] = {pair: [] for pair in todo}
    for r in range(rounds):
        for pair in todo:
            measured[pair].append(_round(config, pair, r, workdir, steps=steps, rounds=rounds, say=say, run=run))
    for pair in todo:
        done[pair] = pooled(measured[pair])
        done[pair].save(calibration_path(workdir, pair))
        say(describe(pair, done[pair]))
    return {pair: done[pair] for pair in pairs}


def calibration_path(workdir: str, pair: Pair) -> str:
    return os.path.join(_folder(workdir, pair), "calibration.json")


def _folder(workdir: str, pair: Pair) -> str:
    return os.path.join(workdir, "calibration", f"workers_{pair[0]}_{pair[1].slug}")


def _round(config: Any, pair: Pair, r: int, workdir: str, *, steps: int, rounds: int, say, run) -> Calibration:
    """Round `r` of `pair`: its finished run in the workdir, else a new one."""
    k, protocol = pair
    folder = os.path.join(_folder(workdir, pair), f"round_{r}")
    if not os.path.exists(os.path.join(folder, "runtime_stats.json")):
        c = apply(calibration_run_config(config, k, steps), Point(protocol.overrides()))
        say(f"calibrating {k} workers under {protocol.name}: real run {r + 1} of {rounds}, {c.steps} gradients")
        run(c, folder)
    return calibrate_workdir(folder)


def describe(pair: Pair, cal: Calibration) -> str:
    """`pair`'s clock in a line: its step time, the rounds' range, and a warning when they disagree."""
    d = cal.delay
    line = (
        f"{pair[0]} workers under {pair[1].name}: {d.mean * 1e3:.3f} ms a step, then {d.latency * 1e3:.3f} ms until "
        f"the coordinator takes the gradient and {d.service * 1e3:.3f} ms it holds it"
    )
    each = cal.measured.get("round_step_seconds") or []
    if len(each) < 2:
        return line
    lo, hi = min(each), max(each)
    line += f" (the mean of {len(each)} runs, a step {lo * 1e3:.3f}-{hi * 1e3:.3f} ms)"
    if hi / lo - 1 > UNSURE:
        line += (
            f"; this host's speed moved {hi / lo - 1:.0%} between them, and predicted seconds are about that "
            "uncertain (--calibrate_rounds averages more runs)"
        )
    return line
