"""asgdjax: asynchronous SGD in JAX: a compiled simulator of asynchrony and a real asynchronous runtime.

import asgdjax
result = asgdjax.simulate(loss_fn, params, (X, y), optimizer=optax.sgd(0.01), num_workers=40, steps=32_000)
"""

__version__ = "0.2.0"

from asgdjax import rules
from asgdjax.api import History, LossTask, Rejections, Result, run_async, simulate
from asgdjax.core.protocol import ProtocolSpec
from asgdjax.core.sampling import ReplacementSampler, ShardSampler
from asgdjax.core.task import Task
from asgdjax.core.trace import Trace
from asgdjax.delays import DelayModel
from asgdjax.sim import make_schedule

__all__ = [
    "DelayModel",
    "History",
    "LossTask",
    "ProtocolSpec",
    "Rejections",
    "ReplacementSampler",
    "Result",
    "ShardSampler",
    "Task",
    "Trace",
    "make_schedule",
    "rules",
    "run_async",
    "simulate",
]
