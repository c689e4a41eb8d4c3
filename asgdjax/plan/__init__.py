"""asgdjax-plan: choose the asynchronous configuration (workers, protocol, staleness rule, learning rate,
momentum) by simulated training on a calibrated or profiled clock, with successive halving."""

from asgdjax.plan.front import FrontRow, pareto_front, recommend
from asgdjax.plan.halving import Score, rung_times, successive_halving
from asgdjax.plan.lanes import Clocks, Lanes
from asgdjax.plan.space import Candidate, ProtocolChoice, Space

__all__ = [
    "Candidate",
    "Clocks",
    "FrontRow",
    "Lanes",
    "ProtocolChoice",
    "Score",
    "Space",
    "pareto_front",
    "recommend",
    "rung_times",
    "successive_halving",
]
