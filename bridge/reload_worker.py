"""Reloading a pickled model in a child process, so that serving never waits for it.

Loading the guide's two files (``model.zip`` + ``vecnormalize.pkl``) means unzipping,
unpickling, building torch modules and a smoke test against SB3's ``predict``: about a
second of Python that, on a thread of the daemon, holds the interpreter in stretches
while bars wait for it. :func:`load_isolated` runs all of it in a child process
(``python -m bridge.reload_worker FOLDER``) that gets the CPU only when nothing else
wants it, and writes the checked policy in the plain format (:mod:`bridge.plain`:
``policy.npz`` and ``normalizer.npz``, checked bit for bit against SB3 there). The daemon
then reads those two numpy files (``allow_pickle=False``, milliseconds) and smoke-tests
them again before the swap. On a machine with no idle CPU the reload waits (up to
:data:`WORKER_TIMEOUT_S`, then fails and the served model stays); serving does not.

A bundle that already carries its plain files is loaded in the daemon itself: nothing in
it is unpickled and reading it takes milliseconds. A policy with no plain form (not a
plain MLP) is loaded in the daemon too, as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any

from bridge.config import ConfigError, ModelSource
from bridge.plain import PlainFormatError, export_plain, has_plain, load_plain
from bridge.policy import LoadedPolicy, PolicyLoadError, _env_config, load_policy, smoke_test

WORKER_TIMEOUT_S = 300.0  # a child still loading after this is killed; the reload fails
SOURCE_FILE = "source.json"
RESULT_FILE = "result.json"
STDERR_FILE = "stderr.txt"
NICE_INCREMENT = 19  # where SCHED_IDLE is missing (macOS); Windows: IDLE_PRIORITY_CLASS

_workers: set[subprocess.Popen[bytes]] = set()
_workers_lock = threading.Lock()


def load_isolated(source: ModelSource) -> LoadedPolicy:
    """Load, check and smoke-test ``source`` as :func:`bridge.policy.load_policy` does,
    with the unpickling done in a child process.

    The result serves the same decisions as ``load_policy(source)`` (the same float32
    weights and float64 statistics) but carries no SB3 model (``model`` is None).

    Raises:
        PolicyLoadError: what ``load_policy`` would raise (the child's message), or the
            child failed, crashed or ran past :data:`WORKER_TIMEOUT_S`.
    """
    try:
        files = source.resolved()
    except ConfigError as exc:
        raise PolicyLoadError(str(exc)) from None
    if files.bundle is not None and files.bundle.is_dir() and has_plain(files.bundle):
        return load_policy(source)  # numpy files only: nothing to keep off this process
    # ignore_cleanup_errors: on Windows a killed child may hold a file a moment longer.
    with tempfile.TemporaryDirectory(
        prefix="ai-trading-bridge-reload-", ignore_cleanup_errors=True
    ) as tmp:
        folder = Path(tmp)
        paths = {
            k: None if v is None else str(Path(v).resolve()) for k, v in files.to_dict().items()
        }
        (folder / SOURCE_FILE).write_text(json.dumps(paths), encoding="utf-8")
        result = _run_worker(folder)
        status = result.get("status")
        if status == "error":
            raise PolicyLoadError(str(result.get("message")))
        if status == "no_plain_form":
            return load_policy(source)  # served through torch: must load here
        if status != "ok":
            raise PolicyLoadError(f"the reload worker gave an unreadable result: {result!r}")
        try:
            actor, normalizer = load_plain(folder)
        except PlainFormatError as exc:
            raise PolicyLoadError(str(exc)) from None
        card = result.get("card") or {}
        served = LoadedPolicy(
            version=str(result["version"]),
            sha256=str(result["sha256"]),
            source=source,
            algorithm=str(result["algorithm"]),
            env_config=_env_config(card, files),
            card=card,
            normalizer=normalizer,
            actor=actor,
            model=None,
        )
    return smoke_test(served)


def _run_worker(folder: Path) -> dict[str, Any]:
    """Run the child on ``folder``; its result, or a PolicyLoadError."""
    # Windows only: idle priority, and no console window flashing up for the child.
    flags = getattr(subprocess, "IDLE_PRIORITY_CLASS", 0) | getattr(
        subprocess, "CREATE_NO_WINDOW", 0
    )
    with open(folder / STDERR_FILE, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "bridge.reload_worker", str(folder)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            creationflags=flags,
        )
        with _workers_lock:
            _workers.add(process)
        try:
            code = process.wait(WORKER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise PolicyLoadError(
                f"loading the model took over {WORKER_TIMEOUT_S:.0f} s and was stopped; "
                "check the machine's load and the model files"
            ) from None
        finally:
            with _workers_lock:
                _workers.discard(process)
    try:
        result: dict[str, Any] = json.loads((folder / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        lines = (folder / STDERR_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
        last = lines[-1] if lines else "no output"
        raise PolicyLoadError(
            f"the reload worker stopped (exit code {code}) without a result: {last}"
        ) from None
    return result


def stop_workers() -> None:
    """Kill every reload child still running (the daemon is stopping)."""
    with _workers_lock:
        running = list(_workers)
    for process in running:
        with contextlib.suppress(OSError):
            process.kill()


def run_only_when_idle() -> None:
    """Give this process the CPU only when nothing else wants it: Linux ``SCHED_IDLE``
    (the serving process always preempts it at once), else the lowest nice value. On
    Windows the parent starts it in ``IDLE_PRIORITY_CLASS``."""
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
    if hasattr(os, "nice"):
        with contextlib.suppress(OSError):
            os.nice(NICE_INCREMENT)


def work(folder: Path) -> dict[str, Any]:
    """The child's job: load and check the source in ``folder``, write the plain files."""
    source = ModelSource.from_options(
        **json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
    )
    try:
        policy = load_policy(source)
    except PolicyLoadError as exc:
        return {"status": "error", "message": str(exc)}
    files = source.resolved()
    with open(files.vecnorm_path, "rb") as f:  # read by load_policy just now
        vecnorm = pickle.load(f)
    try:
        export_plain(policy.model, vecnorm, folder)  # checked against SB3, bit for bit
    except PlainFormatError:
        return {"status": "no_plain_form"}
    return {
        "status": "ok",
        "version": policy.version,
        "sha256": policy.sha256,
        "algorithm": policy.algorithm,
        "card": policy.card,
    }


def main(argv: list[str]) -> int:
    """``python -m bridge.reload_worker FOLDER``: writes ``FOLDER/result.json``."""
    folder = Path(argv[1])
    run_only_when_idle()
    try:
        result = work(folder)
    except Exception as exc:
        traceback.print_exc()
        result = {"status": "error", "message": f"the model could not be loaded: {exc!r}"}
    temporary = folder / (RESULT_FILE + ".tmp")
    temporary.write_text(json.dumps(result), encoding="utf-8")
    os.replace(temporary, folder / RESULT_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
