"""The search space: worker counts x protocols x staleness rules x learning rates x momenta x warm starts,
each axis a comma-separated list on the command line, checked and parsed into typed candidates."""

from __future__ import annotations

import itertools
import re
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
    warm_start: int | None = None  # gradients worker 0 trains alone first (Paine et al. 2013); None: the config's

    @property
    def name(self) -> str:
        warm = "" if self.warm_start is None else f",warm_start={self.warm_start}"
        return (
            f"workers={self.workers},protocol={self.protocol.name},rule={self.rule},"
            f"learning_rate={self.learning_rate:g},momentum={self.momentum:g}{warm}"
        )

    def overrides(self) -> dict[str, Any]:
        warm = {} if self.warm_start is None else {"warm_start_steps": self.warm_start}
        return {
            "num_workers": self.workers,
            **self.protocol.overrides(),
            "rule": self.rule,
            "learning_rate": self.learning_rate,
            "momentum": self.momentum,
            **warm,
        }

    def changes(self, base: Any) -> dict[str, Any]:
        """The config keys this candidate sets to other values than `base` has (worker count aside): what a
        command line running it from `base` must name."""
        return {k: v for k, v in self.overrides().items() if k != "num_workers" and base.get(k) != v}


class Space(NamedTuple):
    """Every axis of the search; `candidates(k)` is the grid at k workers."""

    workers: tuple[int, ...]
    protocols: tuple[ProtocolChoice, ...]
    rules: tuple[str, ...]
    learning_rates: tuple[float, ...]
    momenta: tuple[float, ...]
    warm_starts: tuple[int | None, ...] = (None,)  # None: the config's own

    def candidates(self, workers: int) -> list[Candidate]:
        warm = self.warm_starts if workers > 1 else (None,)  # a lone worker has no warm start
        grid = itertools.product(self.protocols, self.rules, self.learning_rates, self.momenta, warm)
        return [Candidate(workers, p, r, lr, m, w) for p, r, lr, m, w in grid]

    @property
    def size(self) -> int:
        return sum(len(self.candidates(k)) for k in self.workers)

    @classmethod
    def parse(
        cls,
        *,
        workers: str,
        protocols: str,
        rules: str,
        learning_rates: str,
        momenta: str,
        warm_starts: str = "config",
        config_warm_start: int = 0,
        config_steps: int = 0,
        warm_starts_given: bool = True,
    ) -> Space:
        """Parse the comma-separated flag values; the first bad one is a ConfigError naming it. Warm starts
        are gradients, `config` (the config's own, `config_warm_start`) or a multiple of it (`2x`), fewer
        than `config_steps` (when given; the flag's default leaves out those that are not, the user's own
        are refused)."""
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
        ws = warm_start_choices(warm_starts, config_warm_start, config_steps, strict=warm_starts_given)
        return cls(tuple(sorted(set(ks))), ps, rs, lrs, ms, ws)


def warm_start_choices(
    text: str, config_warm_start: int, config_steps: int = 0, *, strict: bool = True
) -> tuple[int | None, ...]:
    """--warm_starts entries as gradients; (None,) when they come to the config's own alone (a plan that
    searches only it names no warm start anywhere), else every candidate names its own, the config's too.
    Entries that come to the same gradients (2x of no warm start) count once. A new one as long as the
    config's steps is refused (worker 0 would train alone throughout), or left out when not `strict` (the
    default `2x` of a config whose warm start is half its run)."""
    got: list[int] = []
    for t in items("warm_starts", text):
        times = re.fullmatch(r"(\d+(?:\.\d*)?)x", t)
        if t == "config":
            n = config_warm_start
        elif times:
            n = round(float(times.group(1)) * config_warm_start)
        elif t.isdigit():
            n = int(t)
        else:
            raise ConfigError(
                f"--warm_starts entry {t!r} is not allowed; use config, a multiple of it (2x) or gradients >= 0"
            )
        if config_steps and n >= config_steps and n != config_warm_start:
            if not strict:
                continue
            raise ConfigError(
                f"--warm_starts entry {t!r} ({n} gradients) is not allowed: it covers all {config_steps} steps "
                "(worker 0 would train alone throughout); use fewer gradients than --config.steps"
            )
        if n not in got:
            got.append(n)
    return (None,) if got == [config_warm_start] else tuple(got)
