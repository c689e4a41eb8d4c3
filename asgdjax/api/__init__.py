"""The front door: simulate and run a researcher's own model and loss (`asgdjax.simulate`, `asgdjax.run_async`)."""

from asgdjax.api.loss_task import LossTask
from asgdjax.api.result import History, Rejections, Result
from asgdjax.api.run_async import run_async
from asgdjax.api.simulate import simulate

__all__ = ["History", "LossTask", "Rejections", "Result", "run_async", "simulate"]
