"""The trainer: `train(config, workdir)` runs any mode and writes metrics, summary and checkpoints."""

from asgdjax.train.run import check, train

__all__ = ["check", "train"]
