"""Where a tool's clock comes from: a hardware profile, a calibration file, a finished async run's
workdir, or else a short real run of the config (`calibration_run_config`) that the caller makes."""

from __future__ import annotations

from typing import Any

from asgdjax.errors import ConfigError
from asgdjax.predict.calibration import MEASURED_ON, Calibration, calibrate_workdir
from asgdjax.predict.profiles import profile_path


def given_clock(
    *, profile: str = "", calibration: str = "", calibrate_from: str = ""
) -> tuple[Calibration, dict] | None:
    """The clock the flags name, with a JSON note of its source; None when they name none."""
    if sum(bool(x) for x in (profile, calibration, calibrate_from)) > 1:
        raise ConfigError("give at most one of --calibration, --profile and --calibrate_from")
    if profile:
        return Calibration.load(profile_path(profile)), {"profile": profile}
    if calibration:
        return Calibration.load(calibration), {"calibration": calibration}
    if calibrate_from:
        return calibrate_workdir(calibrate_from), {"calibrate_from": calibrate_from}
    return None


def mismatch(config: Any, cal: Calibration) -> str | None:
    """A note when the clock was measured on another model, dataset or batch size than `config` (its step
    times then describe another step: the prediction would be of that run's speed, silently)."""
    differ = [
        f"{k} {cal.measured[k]!r} (this config: {config[k]!r})"
        for k in MEASURED_ON
        if k in cal.measured and k in config and cal.measured[k] != config[k]
    ]
    if not differ:
        return None
    return (
        "the clock was measured on " + ", ".join(differ) + ": its step times are that run's, not this config's; "
        "calibrate from a run of this config (or drop --calibrate_from/--calibration for a short calibration run)"
    )


SOLO_FRACTION = 0.1  # of a calibration run's gradients: worker 0 alone first, to fit the clock's `solo`


def calibration_run_config(config: Any, num_workers: int, steps: int) -> Any:
    """A short real async run whose step times become the clock: worker 0 alone for a tenth of it (a warm
    start, whatever the config's: it fits how fast a lone worker runs), then every worker; nothing evaluates
    (an evaluation would pause the workers and skew the clock)."""
    c = config.copy_and_resolve_references()
    solo = int(SOLO_FRACTION * steps) if num_workers > 1 else 0
    c.mode, c.num_workers, c.steps, c.warm_start_steps = "async", num_workers, steps, solo
    c.eval_every = c.log_every = c.checkpoint_every = steps
    return c
