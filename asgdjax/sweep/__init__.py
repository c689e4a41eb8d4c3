"""Sweeps from the command line: a grid of configurations, run together where they share a compiled
program, one table (JSON + CSV) and one picture."""

from asgdjax.sweep.grid import Point, apply, grid, split_argv
from asgdjax.sweep.runner import Row, run_grid

__all__ = ["Point", "Row", "apply", "grid", "run_grid", "split_argv"]
