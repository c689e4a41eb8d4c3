"""Where a tool's clock comes from: a hardware profile, a calibration file, a finished async run's
workdir, or else a short real run of the config (`calibration_run_config`) that the caller makes."""

from __future__ import annotations

from typing import Any

from asgdjax.errors import ConfigError
from asgdjax.predict.calibration import Calibration, calibrate_workdir
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
