"""The one exception a user sees for bad input: printed as one line, exit status 2, no traceback."""


class ConfigError(ValueError):
    """A config value, dataset or workdir that cannot be used; the message names it and what is allowed."""


class Diverged(RuntimeError):
    """The training loss became NaN or exceeded max_train_loss; the last good checkpoint is kept."""


class TraceMismatch(ConfigError):
    """A trace that the simulator asked to replay it cannot express (workers, group size, local steps)."""
