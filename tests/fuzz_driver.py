"""A fork server for the console-script tests and the fuzz harness: runs the scripts' own entry points
(asgdjax-train, asgdjax-prepare, asgdjax-predict, asgdjax-sweep) once per case in a forked child, so a case
costs a fraction of a second instead of a fresh interpreter and JAX import apiece.

Protocol (JSON lines): stdin {"script", "args", "cwd", "env", "timeout"} -> stdout {"code", "stdout",
"stderr"}.
The parent imports the heavy libraries but never starts a JAX backend, so each child starts its own.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
import traceback

ENTRIES = {
    "train": ("asgdjax.main", "run"),
    "prepare": ("asgdjax.prepare", "run"),
    "predict": ("asgdjax.predict_main", "entry"),
    "sweep": ("asgdjax.sweep_main", "entry"),
    "plan": ("asgdjax.plan_main", "entry"),
}


def preload() -> None:
    import absl.app  # noqa: F401
    import jax  # noqa: F401
    import ml_collections  # noqa: F401
    import numpy  # noqa: F401
    import optax  # noqa: F401
    import orbax.checkpoint  # noqa: F401
    import tensorflow_datasets  # noqa: F401


def child(case: dict, out: str, err: str) -> None:
    os.chdir(case["cwd"])
    os.environ.update(case.get("env") or {})
    for fd, path in ((1, out), (2, err)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(f, fd)
        os.close(f)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    module, fn = ENTRIES[case["script"]]
    sys.argv = [f"asgdjax-{case['script']}", *case["args"]]
    code = 0
    try:
        getattr(__import__(module, fromlist=[fn]), fn)()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 (what the harness looks for: a traceback)
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run(case: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        pid = os.fork()
        if pid == 0:
            child(case, out, err)
        deadline = time.time() + case.get("timeout", 120)
        code = None
        while code is None:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
            elif time.time() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                code = "timeout"
            else:
                time.sleep(0.01)
        return {"code": code, "stdout": _read(out), "stderr": _read(err)}


def _read(path: str) -> str:
    if not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        return f.read()


def main() -> None:
    preload()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        print(json.dumps(run(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
