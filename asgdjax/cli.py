"""What every asgdjax console script shares: the --config flag (overrides checked before anything runs) and
one-line errors with exit status 2."""

from __future__ import annotations

import ast
import difflib
import errno
import logging
import os
import re
import signal
import sys

import ml_collections
from absl import app, flags
from ml_collections import config_flags

import asgdjax.configs
from asgdjax.configs.describe import keys as config_keys
from asgdjax.configs.describe import load_file as load_config_file
from asgdjax.configs.describe import text as config_keys_text

DEFAULT_CONFIG = os.path.join(os.path.dirname(asgdjax.configs.__file__), "default.py")
PROGRAM = ["asgdjax"]
CONFIG_FILE_HELP = "an ml_collections config file (default asgdjax/configs/default.py, the embedded digits job)"
CONFIG_HELP = (
    f"{CONFIG_FILE_HELP}; every key below (the defaults of asgdjax/configs/base.py, which config files "
    "override) is set with --config.KEY=VALUE:" + config_keys_text()
)


def config_path() -> str:
    value = flags.FLAGS["config"].config_filename if hasattr(flags.FLAGS["config"], "config_filename") else None
    return value or DEFAULT_CONFIG


def fail(message: str) -> None:
    """Print `PROGRAM: error: message` and exit 2."""
    print(f"{PROGRAM[0]}: error: {message}", file=sys.stderr)
    sys.exit(2)


class _QuietLibraries(logging.Filter):
    """Orbax and TFDS log their own view of a damaged file (one more 'error' line for the user); asgdjax
    already says what is wrong and what to do, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        path = record.pathname.replace("\\", "/")
        return not any(part in path for part in ("/orbax/", "/tensorflow_datasets/", "/etils/"))


def start_tool(argv: list[str], *, target: float) -> None:
    """A tool's first checks: no stray positional argument, a target accuracy in (0, 1]; library logs quiet."""
    from absl import logging as absl_logging

    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]!r}; pass settings as --FLAG=VALUE and --config.KEY=VALUE")
    absl_logging.set_verbosity(absl_logging.WARNING)
    check_target(target)


def check_target(target: float) -> None:
    """A target accuracy flag is a fraction in (0, 1]."""
    if not 0 < target <= 1:
        fail(f"--target={target!r} is not allowed; use an accuracy in (0, 1]")


def check_at_least(values: dict[str, int], lowest: dict[str, int]) -> None:
    """Integer flags with a floor (`lowest[name]`): the first one below it is one line naming it."""
    for name, low in lowest.items():
        if values[name] < low:
            fail(f"--{name}={values[name]!r} is not allowed; use an integer >= {low}")


def quiet_libraries() -> None:
    import absl.logging

    absl.logging.get_absl_logger().addFilter(_QuietLibraries())
    for handler in logging.getLogger().handlers:
        handler.addFilter(_QuietLibraries())


def run_app(main_fn, program: str, *, with_config: bool = True, doc: str = "") -> None:
    """Define --config (overrides checked before anything runs, one-line errors) and run `main_fn`."""
    PROGRAM[0] = program
    quiet_libraries()
    if any(a in ("--help", "-h", "--helpshort", "-?") for a in sys.argv[1:]):
        print_help(program, doc, with_config)
        sys.exit(0)
    if with_config:
        define_config(DEFAULT_CONFIG, CONFIG_HELP)
    app.run(_interruptible(main_fn, with_config), flags_parser=parse_flags)


def _interruptible(main_fn, with_config: bool):
    """main_fn with Ctrl-C as one line and exit 130 (a run's checkpoints are kept; rerunning resumes), after
    checking that the config file's get_config() returned a ConfigDict."""

    def run(argv):
        got = flags.FLAGS.config if with_config else None
        if with_config and not isinstance(got, ml_collections.ConfigDict):
            fail(
                f"--config's get_config() returned a {type(got).__name__}; return an ml_collections.ConfigDict "
                "(start from asgdjax.configs.base.base_config())"
            )
        try:
            out = main_fn(argv)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # done: a late Ctrl-C must not traceback in atexit
            return out
        except KeyboardInterrupt:
            print(
                f"{PROGRAM[0]}: interrupted; what was saved is kept (rerun the same command to resume)", file=sys.stderr
            )
            sys.exit(130)

    return run


def define_config(default: str | None, help_text: str = CONFIG_HELP) -> None:
    """Define --config (the tools' and the experiment scripts'): the file on the command line is checked and
    ml_collections applies the --config.KEY=VALUE overrides now, each error one line with exit 2."""
    if PROGRAM[0] == "asgdjax":
        PROGRAM[0] = os.path.basename(sys.argv[0])
    given = config_argument(sys.argv[1:], whole=True)
    if given is not None:
        check_config_file(given.split(":", 1)[0], with_argument=":" in given)
    elif default is None and (keys := overridden_keys(sys.argv[1:])):
        fail(f"--config.{keys[0]} overrides a config file, and none is named; add --config=PATH (see --help)")
    try:  # ml_collections applies --config.KEY=VALUE overrides while the flag is defined
        config_flags.DEFINE_config_file("config", default, help_text, lock_config=True)
    except (AttributeError, KeyError) as e:
        fail(_unknown_key(e, sys.argv[1:]))
    except (ValueError, TypeError) as e:
        fail(_unknown_key(e, sys.argv[1:]) if "string indices" in str(e) else f"bad config override: {e}")


def _unknown_key(e: BaseException, argv: list[str]) -> str:
    """The line for a --config.KEY that the config does not have, with the closest keys of base.py."""
    known = [k.key for k in config_keys()]
    unknown = next((k for k in overridden_keys(argv) if k not in known), None)
    if unknown is None:
        return f"bad config override ({type(e).__name__}: {e}); allowed: the keys of asgdjax/configs/base.py"
    close = difflib.get_close_matches(unknown, known, n=3, cutoff=0.7)
    hint = f" (did you mean {' or '.join(repr(k) for k in close)}?)" if close else ""
    group = unknown.rsplit(".", 1)[0]
    if not close and "." in unknown and group in known:
        hint = f" ({group!r} is a value, not a group of keys)"
    return (
        f"unknown config key {unknown!r}{hint}; allowed: the keys of asgdjax/configs/base.py "
        "(asgdjax-train --help lists them)"
    )


def overridden_keys(argv: list[str]) -> list[str]:
    """The KEYs of the --config.KEY=VALUE arguments in `argv`, in order."""
    return [a[len("--config.") :].split("=", 1)[0] for a in argv if a.startswith("--config.")]


def print_help(program: str, doc: str, with_config: bool) -> None:
    """The program's own usage, its flags, and (with --config) every config key, default and meaning."""
    print(doc.strip() or program)
    print("\nflags:")
    for name, flag in sorted(flags.FLAGS._flags().items()):
        module = flags.FLAGS.find_module_defining_flag(name) or ""
        if name == flag.name and module.startswith("asgdjax") and name != "config":
            print(f"  --{name}={flag.default!r}: {flag.help}")
    if with_config:
        given, values = config_argument(sys.argv[1:], whole=True), None
        path, _, arg = (given or DEFAULT_CONFIG).partition(":")
        try:  # the values a run with these flags starts from: the named file's, else the default file's
            values = load_config_file(path, arg or None)
        except Exception as e:  # noqa: BLE001 (help still prints, with the base defaults)
            print(f"  (--config={given!r} cannot be loaded: {type(e).__name__}: {e}; base defaults below)")
        name = given or "asgdjax/configs/default.py, the default"
        source = f"{name}: its values, base.py's where it differs" if values is not None else "base defaults"
        print(f"  --config=PATH: {CONFIG_FILE_HELP}; then --config.KEY=VALUE sets any key below ({source}):")
        print(config_keys_text(config=values))
    print("\n(--helpfull lists absl's own flags too)")


def parse_flags(argv):
    """absl's flag parsing with its errors (a bad value, an unknown flag, a config file that fails) as one
    line and exit 2: the tools' and the experiment scripts' flags_parser."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        text = str(e)
        if "Error whilst parsing config file" in text:  # ml_collections wraps get_config's error with its traceback
            raised = [line.strip() for line in text.splitlines() if line.strip()][-1]
            fail(f"--config={config_argument(argv[1:])!r} cannot be loaded ({raised})")
        fail(_typed_override(text) or _unknown_flag(text) or text)
    except Exception as e:  # noqa: BLE001 (a config file that raises while it is loaded)
        fail(f"--config={config_argument(argv[1:])!r} cannot be loaded ({type(e).__name__}: {e})")


_OVERRIDE_TYPES = {
    "invalid literal for int()": "an integer",
    "could not convert string to float": "a number",
    "Non-boolean argument": "true or false",
}


def _typed_override(text: str) -> str | None:
    """absl's message for a --FLAG=VALUE or --config.KEY=VALUE of the wrong type, as the tools' line: the
    flag, the value and what is allowed; None for any other message."""
    match = re.match(r"flag --([\w.]+)=(.*?): ", text)
    if match is None:
        return None
    name, value = match.groups()
    if "as a ConfigDict" in text:  # --config.delay=3: a group of keys given one value
        group = ml_collections.ConfigDict(flags.FLAGS["config"].value).get(name.removeprefix("config."), {})
        keys = list(group.keys()) if hasattr(group, "keys") else []
        first = "kind" if "kind" in keys else next(iter(keys), "KEY")
        return f"--{name}={value!r} is not allowed; {name} is a group of keys, set one: e.g. --{name}.{first}=..."
    allowed = next((kind for cue, kind in _OVERRIDE_TYPES.items() if cue in text), None)
    return None if allowed is None else f"--{name}={value!r} is not allowed; use {allowed}"


def _unknown_flag(text: str) -> str | None:
    """absl's unknown-flag message with the closest flags or config keys (`--confg.mode`: `--config.mode`)."""
    match = re.match(r"Unknown command line flag '([^']+)'", text)
    if match is None:
        return None
    name = match.group(1)
    ours = [n for n, f in flags.FLAGS._flags().items() if n == f.name and n not in ("helpfull", "helpxml")]
    ours += [f"config.{k.key}" for k in config_keys()] if "config" in flags.FLAGS else []
    close = difflib.get_close_matches(name, ours, n=2, cutoff=0.75)
    hint = f" (did you mean {' or '.join('--' + c for c in close)}?)" if close else ""
    return f"unknown flag --{name}{hint}; {PROGRAM[0]} --help lists the flags and config keys"


def exhaustion(exc: BaseException) -> str | None:
    """What ran out, when `exc` means a resource ran out (disk, host or device memory); else None."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full (writing {exc.filename or 'the outputs'})"
    if isinstance(exc, MemoryError):
        return "host memory ran out"
    text = str(exc)
    if "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower():
        return f"device memory ran out ({text.splitlines()[0][:160]})"
    return None


def kept(workdir: str) -> str:
    """What a stopped run leaves: its last complete checkpoint, or nothing."""
    ck = os.path.join(workdir, "checkpoints")
    steps = sorted(int(n) for n in os.listdir(ck) if n.isdigit()) if os.path.isdir(ck) else []
    if not steps:
        return "no checkpoint was written; nothing to resume from"
    return f"the last checkpoint (step {steps[-1]}) is kept in {ck}: free some and rerun the same command to resume"


def config_argument(argv: list[str], *, whole: bool = False) -> str | None:
    """The file part of --config=PATH[:ARG] (or --config PATH), as given on the command line (`whole`: with
    its :ARG)."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            value = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(argv):
            value = argv[i + 1]
        else:
            continue
        return value if whole else value.split(":", 1)[0]
    return None


def check_config_file(path: str, *, with_argument: bool = False) -> None:
    """One line unless `path` is a readable Python file that defines get_config() (taking an argument when
    the command line gives it one, as PATH:ARG)."""
    if not os.path.isfile(path):
        what = "is a folder" if os.path.isdir(path) else "does not exist"
        fail(f"--config={path!r} {what}; give a config file such as asgdjax/configs/mnist.py")
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, UnicodeDecodeError) as e:
        fail(f"--config={path!r} cannot be read ({e})")
    except SyntaxError as e:
        fail(f"--config={path!r} is not valid Python (line {e.lineno}: {e.msg})")
    defined = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    if "get_config" not in defined:
        fail(f"--config={path!r} defines no get_config(); a config file returns its ConfigDict from get_config()")
    args = defined["get_config"].args
    if with_argument and not (args.args or args.posonlyargs or args.vararg):
        fail(f"--config={path!r} takes no argument (its get_config() has no parameter); drop the ':...' after it")
