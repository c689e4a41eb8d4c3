"""The real asynchronous runtime: a host-side coordinator dispatching jitted gradient steps to devices."""

from asgdjax.runtime.coordinator import Coordinator, placements_for
from asgdjax.runtime.pool import Dispatched, WorkerPool
from asgdjax.runtime.run_state import Applied, RunOptions, RuntimeStats

__all__ = ["Applied", "Coordinator", "Dispatched", "RunOptions", "RuntimeStats", "WorkerPool", "placements_for"]
