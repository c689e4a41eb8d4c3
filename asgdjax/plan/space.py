"""The search space: worker counts x protocols x staleness rules x learning rates x momenta, each axis a
comma-separated list on the command line, checked and parsed into typed candidates."""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

from asgdjax.errors import ConfigError
from asgdjax.flag_lists import items, numbers, once, positive_ints
from asgdjax.rules import RULES

PROTOCOL_KINDS = ("async", "downpour", "ssp", "softsync")
PROTOCOL_HELP = "async, downpour:N (n_fetch = n_push = N), ssp:S (staleness bound S) or softsync:N"


class ProtocolChoice(NamedTuple):
    """One protocol setting: plain A-SGD, Downpour with N local steps, SSP bound S, or n-softsync."""

    kind: str
    n: int = 1

    @property
    def name(self) -> str:
        return self.kind if self.kind == "async" else f"{self.kind}:{self.n}"

    @property
    def slug(self) -> str:
        """The name without punctuation (folder names): async, downpour4, ssp8, softsync2."""
        return self.name.replace(":", "")

    def overrides(self) -> dict[str, Any]:
        """The config keys this protocol sets (every protocol key, so no base setting leaks through)."""
        keys: dict[str, Any] = {"protocol": "async", "n_fetch": 1, "n_push": 1, "max_staleness": -1, "softsync_n": 1}
        if self.kind == "downpour":
            keys.update(n_fetch=self.n, n_push=self.n)
        elif self.kind == "ssp":
            keys.update(max_staleness=self.n)
        elif self.kind == "softsync":
            keys.update(protocol="softsync", softsync_n=self.n)
        return keys

    @classmethod
    def parse(cls, text: str) -> ProtocolChoice:
        kind, _, n = text.strip().partition(":")
        if kind not in PROTOCOL_KINDS or (kind == "async") != (n == ""):
            raise ConfigError(f"--protocols entry {text!r} is not allowed; use {PROTOCOL_HELP}")
        if kind == "async":
            return cls("async")
        if not n.isdigit() or int(n) < (0 if kind == "ssp" else 1):
            raise ConfigError(f"--protocols entry {text!r} is not allowed; N must be an integer >= 1 (ssp: >= 0)")
        return cls(kind, int(n))


class Candidate(NamedTuple):
    """One configuration the planner may recommend."""

    workers: int
    protocol: ProtocolChoice
    rule: str
    learning_rate: float
    momentum: float

    @property
    def name(self) -> str:
        return (
            f"workers={self.workers},protocol={self.protocol.name},rule={self.rule},"
            f"learning_rate={self.learning_rate:g},momentum={self.momentum:g}"
        )

    def overrides(self) -> dict[str, Any]:
        return {
            "num_workers": self.workers,
            **self.protocol.overrides(),
            "rule": self.rule,
            "learning_rate": self.learning_rate,
            "momentum": self.momentum,
        }


class Space(NamedTuple):
    """Every axis of the search; `candidates(k)` is the grid at k workers."""

    workers: tuple[int, ...]
    protocols: tuple[ProtocolChoice, ...]
    rules: tuple[str, ...]
    learning_rates: tuple[float, ...]
    momenta: tuple[float, ...]

    def candidates(self, workers: int) -> list[Candidate]:
        grid = itertools.product(self.protocols, self.rules, self.learning_rates, self.momenta)
        return [Candidate(workers, p, r, lr, m) for p, r, lr, m in grid]

    @property
    def size(self) -> int:
        return len(self.workers) * len(self.candidates(self.workers[0]))

    @classmethod
    def parse(cls, *, workers: str, protocols: str, rules: str, learning_rates: str, momenta: str) -> Space:
        """Parse the comma-separated flag values; the first bad one is a ConfigError naming it."""
        ks = tuple(positive_ints("workers", workers))
        texts = items("protocols", protocols)
        ps = tuple(ProtocolChoice.parse(t) for t in texts)
        once("protocols", texts, list(ps))  # downpour:4 and downpour:4:4 name one protocol
        rs = tuple(items("rules", rules))
        for r in rs:
            if r not in RULES:
                raise ConfigError(f"--rules entry {r!r} is not allowed; use {', '.join(RULES)}")
        lrs = tuple(
            numbers("learning_rates", learning_rates, float, allowed="numbers > 0", ok=lambda x: 0 < x < float("inf"))
        )
        ms = tuple(numbers("momenta", momenta, float, allowed="numbers in [0, 1)", ok=lambda x: 0 <= x < 1))
        return cls(tuple(sorted(set(ks))), ps, rs, lrs, ms)
