"""Calibration: the virtual clock's parameters fitted to what a real run measured, saved as editable JSON.

A real run's coordinator records, per arrival, the worker's step time (dispatch -> gradient ready), the
time until the coordinator took it (`latency`) and how long it then held it (`service`: rows, the server
update's dispatch, fetch, starting the next step). The fit: per-worker mean step times give relative
speeds; step times divided by their worker's mean give the noise, fitted as a mean-1 lognormal (sigma of
the log) or, when nearly constant, as constant. A warm start's arrivals (worker 0 alone) fit how much
faster a lone worker's whole cycle runs (`solo`: on a 2-core host, 0.4-0.6, since the coordinator and
the other workers no longer compete for the cores). The result is a `DelayModel`, so the simulator's schedules
run on the measured clock. Edit the JSON for hardware you do not have: more workers (missing speeds are 1),
slower ones (speeds 3.0), a network (latency 0.05).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence

import numpy as np

from asgdjax.delays import COMM_KEYS, DelayModel
from asgdjax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Calibration:
    """A fitted delay model plus what it was measured on (for the record; not used by predictions)."""

    delay: DelayModel
    measured: dict = dataclasses.field(default_factory=dict)

    def for_workers(self, num_workers: int) -> DelayModel:
        """The delay model for `num_workers`: calibrated speeds for the first ones, 1 (typical) after."""
        speeds = tuple(self.delay.speeds[:num_workers])
        speeds += (1.0,) * (num_workers - len(speeds)) if speeds else ()
        return dataclasses.replace(self.delay, speeds=speeds)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self.delay)
        d["speeds"] = list(d["speeds"])
        for k in ("staleness_bound",):
            d.pop(k)
        return {"delay": d, "measured": self.measured}

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_json(), f, indent=2)
            f.write("\n")

    @classmethod
    def load(cls, path: str) -> Calibration:
        """Read a calibration JSON; a missing file or a bad field is a ConfigError naming it."""
        try:
            with open(path) as f:
                raw = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"calibration {path!r} cannot be read ({e}); give a file asgdjax-predict wrote") from None
        delay = raw.get("delay") if isinstance(raw, dict) else None
        if not isinstance(delay, dict):
            raise ConfigError(f"calibration {path!r} has no 'delay' object; give a file asgdjax-predict wrote")
        fields = {f.name for f in dataclasses.fields(DelayModel)}
        unknown = sorted(set(delay) - fields)
        if unknown:
            raise ConfigError(f"calibration {path!r} has unknown delay field {unknown[0]!r}; allowed: {sorted(fields)}")
        missing = [k for k in REQUIRED if k not in delay]
        if missing:
            raise ConfigError(
                f"calibration {path!r} has no delay field {missing[0]!r}; every one of {', '.join(REQUIRED)} is needed"
            )
        _check_types(path, delay)
        # a measured calibration says what it was measured on; a hardware profile its name and sources
        measured = raw.get("measured") or {k: raw[k] for k in ("name", "describes", "sources") if k in raw}
        try:
            return cls(DelayModel(**{**delay, "speeds": tuple(float(s) for s in delay["speeds"])}), measured)
        except ConfigError as e:
            raise ConfigError(f"calibration {path!r}: {e}") from None


REQUIRED = ("kind", "mean", "spread", "speeds", "straggler_prob", "straggler_factor", "latency", "service", *COMM_KEYS)


def _check_types(path: str, delay: dict) -> None:
    """Each field of its type: kind a string, speeds a list of numbers, the rest numbers (no booleans)."""
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    for key, value in delay.items():
        if key == "kind":
            ok = isinstance(value, str)
        elif key == "speeds":
            ok = isinstance(value, list) and all(number(s) for s in value)
        else:
            ok = number(value)
        if not ok:
            want = "a string" if key == "kind" else "a list of numbers" if key == "speeds" else "a number"
            raise ConfigError(f"calibration {path!r} field delay.{key}={value!r} is not {want}")


def fit(
    step_seconds: list[tuple[int, float]],
    latency: list[float],
    service: list[float],
    num_workers: int,
    measured: dict | None = None,
    skip: int = 2,
    solo_steps: int = 0,
) -> Calibration:
    """Fit a Calibration from per-arrival samples (the coordinator's RuntimeStats).

    The first `skip` steps of every worker are dropped (compilation, warm-up). The first `solo_steps`
    arrivals (a warm start: worker 0 alone) fit `solo` instead: their mean cycle (step + notice + service)
    over the shared clock's cycle for worker 0; the shared clock is fitted from the arrivals after them.
    """
    shared = slice(solo_steps if solo_steps < len(step_seconds) else 0, None)
    delay = _fit_shared(step_seconds[shared], latency[shared], service[shared], num_workers, skip)
    solo = 1.0
    if 0 < solo_steps < len(step_seconds) and solo_steps > skip + 2:
        cycles = [t + n + v for (_, t), n, v in zip(step_seconds, latency, service, strict=False)]
        own = delay.mean * (delay.speeds[0] if delay.speeds else 1.0) + delay.latency + delay.service
        solo = _trimmed_mean(cycles[skip:solo_steps]) / own
    delay = dataclasses.replace(delay, solo=float(solo))
    info = {"num_workers": num_workers, "samples": len(step_seconds), "solo_samples": max(0, solo_steps - skip)}
    return Calibration(delay, {**info, **(measured or {})})


def _fit_shared(
    step_seconds: list[tuple[int, float]], latency: list[float], service: list[float], num_workers: int, skip: int
) -> DelayModel:
    """Per-worker mean step times (relative speeds), the lognormal noise around them, latency and service."""
    samples: dict[int, list[float]] = {w: [] for w in range(num_workers)}
    for w, t in step_seconds:
        samples[int(w)].append(float(t))
    per_worker = {w: _trim(np.asarray(v[skip:] if len(v) > skip + 2 else v)) for w, v in samples.items()}
    if any(len(v) == 0 for v in per_worker.values()):
        missing = [w for w, v in per_worker.items() if len(v) == 0]
        raise ValueError(f"workers {missing} have no step-time samples to calibrate from")
    means = np.asarray([v.mean() for v in per_worker.values()])
    mean = float(means.mean())
    noise = np.concatenate([v / v.mean() for v in per_worker.values()])
    sigma = float(np.std(np.log(noise)))
    kind, spread = ("constant", 0.5) if sigma < 0.01 else ("lognormal", sigma)
    start = min(skip * num_workers, len(latency) // 2)
    return DelayModel(
        kind=kind,
        mean=mean,
        spread=spread,
        speeds=tuple(float(m / mean) for m in means),
        latency=_trimmed_mean(latency[start:]),
        service=_trimmed_mean(service[start:]),
    )


def _trim(x: np.ndarray, top: float = 0.01) -> np.ndarray:
    return np.sort(x)[: max(1, int(np.ceil(len(x) * (1 - top))))] if len(x) else x


def _trimmed_mean(x) -> float:
    """Mean without the slowest 1% (evaluations, checkpoints and log flushes pause the coordinator)."""
    return float(_trim(np.asarray(x, np.float64)).mean()) if len(x) else 0.0


def calibrate(stats, num_workers: int, measured: dict | None = None, *, solo_steps: int = 0) -> Calibration:
    """The Calibration of a finished runtime run (`Coordinator.run`'s RuntimeStats)."""
    return fit(
        stats.step_seconds, stats.notice_seconds, stats.service_seconds, num_workers, measured, solo_steps=solo_steps
    )


def pooled(rounds: Sequence[Calibration]) -> Calibration:
    """One clock from several calibration runs of the same setting made at different times: the mean of
    their fitted terms. A noisy host's slow and fast spells last seconds, as long as a short run, so one
    run alone can miss the host's typical speed by a quarter (session 18: 1.18 ms a step in the plan's
    calibration against 0.87-0.90 ms in the real runs it predicted). Each run's own step times are recorded."""
    if not rounds:
        raise ValueError("no calibration runs to pool")
    delays = [r.delay for r in rounds]
    speeds = tuple(float(np.mean(s)) for s in zip(*(d.speeds for d in delays), strict=True))
    average = lambda key: float(np.mean([getattr(d, key) for d in delays]))  # noqa: E731
    noisy = [d for d in delays if d.kind == "lognormal"]  # a constant fit's spread is a placeholder
    kind, spread = (
        ("lognormal", float(np.mean([d.spread for d in noisy]))) if noisy else (delays[0].kind, delays[0].spread)
    )
    delay = dataclasses.replace(
        delays[0],
        kind=kind,
        spread=spread,
        speeds=speeds,
        mean=average("mean"),
        latency=average("latency"),
        service=average("service"),
        solo=average("solo"),
    )
    first = {k: v for k, v in rounds[0].measured.items() if k != "workdir"}
    each = {
        "rounds": len(rounds),
        "round_step_seconds": [d.mean for d in delays],
        "workdirs": [r.measured.get("workdir") for r in rounds],
    }
    return Calibration(delay, {**first, **each})


MEASURED_ON = ("model", "dataset", "batch_size")  # the settings a step time depends on, recorded with it


def calibrate_workdir(workdir: str) -> Calibration:
    """The Calibration of a finished `mode=async` run from its runtime_stats.json and config.json."""
    try:
        with open(os.path.join(workdir, "runtime_stats.json")) as f:
            raw = json.load(f)
        with open(os.path.join(workdir, "config.json")) as f:
            config = json.load(f)
    except OSError:
        raise ConfigError(f"{workdir!r} holds no finished mode=async run (runtime_stats.json, config.json)") from None
    measured = {"workdir": os.path.abspath(workdir), **{k: config[k] for k in MEASURED_ON if k in config}}
    solo = int(config.get("warm_start_steps", 0)) if config["num_workers"] > 1 else 0
    return fit(
        raw["step_seconds"],
        raw["notice_seconds"],
        raw["service_seconds"],
        config["num_workers"],
        measured,
        solo_steps=solo,
    )
