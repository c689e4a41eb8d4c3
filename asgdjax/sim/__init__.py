"""The functional simulator of asynchrony: delay models -> schedules (traces) -> a compiled replay."""

from asgdjax.sim.engine import SimState, Simulator, make_streams
from asgdjax.sim.schedule import PROTOCOLS, make_schedule, uniform_staleness_schedule
from asgdjax.sim.trace import Trace
from asgdjax.sim.waves import partition_waves

__all__ = [
    "PROTOCOLS",
    "SimState",
    "Simulator",
    "Trace",
    "make_schedule",
    "make_streams",
    "partition_waves",
    "uniform_staleness_schedule",
]
