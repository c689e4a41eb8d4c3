"""The real asynchronous runtime: a host-side coordinator dispatching jitted gradient steps to devices."""

from asgdjax.runtime.coordinator import Coordinator, RuntimeStats
from asgdjax.runtime.devices import assign_devices

__all__ = ["Coordinator", "RuntimeStats", "assign_devices"]
