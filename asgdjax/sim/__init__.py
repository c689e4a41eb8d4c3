"""The functional simulator of asynchrony: delay models -> schedules (traces) -> a compiled replay."""

from asgdjax.sim.engine import STRATEGIES, SimState, Simulator
from asgdjax.sim.schedule import continue_schedule, make_schedule, uniform_staleness_schedule
from asgdjax.sim.waves import partition_waves

__all__ = [
    "STRATEGIES",
    "SimState",
    "Simulator",
    "continue_schedule",
    "make_schedule",
    "partition_waves",
    "uniform_staleness_schedule",
]
