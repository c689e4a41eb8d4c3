"""The simulator as a predictor: calibrate the virtual clock from a real run, predict time to accuracy."""

from asgdjax.predict.calibration import Calibration, calibrate
from asgdjax.predict.targets import time_to_target

__all__ = ["Calibration", "calibrate", "time_to_target"]
