"""The training progress bar: tqdm where someone watches it (a terminal, a notebook); in a log file (stderr
redirected: a cluster job, `nohup`, `2> log`) one plain line at most every LOG_SECONDS, because tqdm's
carriage returns would make the whole run one line of thousands of rewrites there."""

from __future__ import annotations

import io
import sys
from typing import IO, Any

from tqdm import std
from tqdm.auto import tqdm as watched_tqdm

LOG_SECONDS = 30.0  # between two progress lines in a log file


class _Lines(io.TextIOBase):
    """A stream that writes each status tqdm would redraw in place ('\\r' + status) as a line of its own."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, s: str) -> int:
        text = s.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")
        return len(s)

    def flush(self) -> None:
        self.stream.flush()


def watched(stream: IO[str]) -> bool:
    """Whether a person sees `stream` redrawn: a terminal, or a notebook (tqdm draws a widget there)."""
    if any(c.__module__ == "tqdm.notebook" for c in watched_tqdm.__mro__):
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(*, total: int, initial: int, unit: str, enabled: bool, stream: IO[str] | None = None) -> Any:
    """A manual tqdm bar over `total` (call .update(n)), drawn in place where watched, else logged as lines."""
    stream = stream or sys.stderr
    common = dict(total=total, initial=initial, unit=unit, disable=not enabled)
    if watched(stream):
        return watched_tqdm(**common, file=stream, dynamic_ncols=True)
    return std.tqdm(**common, file=_Lines(stream), mininterval=LOG_SECONDS, maxinterval=LOG_SECONDS, ncols=100)
