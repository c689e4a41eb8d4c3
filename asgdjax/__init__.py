"""asgdjax: asynchronous SGD in JAX: a compiled simulator of asynchrony and a real asynchronous runtime."""

__version__ = "0.1.0"
