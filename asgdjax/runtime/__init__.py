"""The real asynchronous runtime: a host-side coordinator dispatching jitted gradient steps to devices."""

from asgdjax.runtime.coordinator import Coordinator, RuntimeStats, placements_for

__all__ = ["Coordinator", "RuntimeStats", "placements_for"]
