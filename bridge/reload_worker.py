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
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
import weakref
from pathlib import Path
from typing import Any, NoReturn

import structlog

from bridge.config import ConfigError, ModelSource
from bridge.plain import PlainFormatError, export_plain, has_plain, load_plain
from bridge.policy import (
    LoadedPolicy,
    PolicyLoadError,
    _env_config,
    _require_files,
    file_sha256,
    load_policy,
    smoke_test,
)

WORKER_TIMEOUT_S = 300.0  # a child still loading after this is killed; the reload fails
SOURCE_FILE = "source.json"
RESULT_FILE = "result.json"
STDERR_FILE = "stderr.txt"
NICE_INCREMENT = 19  # where SCHED_IDLE is missing (macOS); Windows: IDLE_PRIORITY_CLASS
IDLE_PRIORITY_S = 30.0  # then a child that got no idle CPU is raised to below normal
BELOW_NORMAL_NICE = 10

EVENTS_FILE = "events.jsonl"  # the child's log events, logged again by the daemon
PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the folder holding bridge/
# The child imports this very copy of the package: its folder goes first on sys.path,
# ahead of the working folder (`python -m` would put that first, and a daemon started
# in a source tree would then run the tree's copy, not the installed one).
_CHILD_CODE = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from bridge.reload_worker import main; sys.exit(main(sys.argv[1:]))"
)

_log = structlog.get_logger()
_workers: dict[subprocess.Popen[bytes], threading.Thread] = {}  # child -> thread awaiting it
_cancelled: weakref.WeakSet[threading.Thread] = weakref.WeakSet()  # may start no child
_workers_lock = threading.Lock()
_held: list[int] = []  # children stopped by hold_workers(); the serving thread only
_STOP = getattr(signal, "SIGSTOP", None)  # POSIX only
_CONT = getattr(signal, "SIGCONT", None)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


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
    _require_files(files)  # a missing file is said at once, without starting a child
    # ignore_cleanup_errors: on Windows a killed child may hold a file a moment longer.
    with tempfile.TemporaryDirectory(
        prefix="ai-trading-bridge-reload-", ignore_cleanup_errors=True
    ) as tmp:
        folder = Path(tmp)
        # As given: the child runs in this process's folder, so relative paths, symlinks
        # and the version string they give are the same as in an in-process load. With
        # the files' hashes now: the child may start loading minutes later (idle CPU
        # only), and must load these bytes (a deploy pointer's files were checked
        # against the pointer just now), not a file changed since.
        job = {"source": files.to_dict(), "sha256": _hashes(files)}
        (folder / SOURCE_FILE).write_text(json.dumps(job), encoding="utf-8")
        result = _run_worker(folder)
        relay_log_events(folder / EVENTS_FILE)
        status = result.get("status")
        if status == "error":
            raise PolicyLoadError(str(result.get("message")))
        if status == "no_plain_form":
            return load_policy(source)  # served through torch: must load here
        if status != "ok":
            raise PolicyLoadError(f"the reload worker gave an unreadable result: {result!r}")
        if result.get("package") != str(PACKAGE_ROOT):
            raise PolicyLoadError(
                f"the reload worker imported the package from {result.get('package')}, not "
                f"from this daemon's {PACKAGE_ROOT}; nothing was swapped"
            )
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


def _hashes(files: ModelSource) -> dict[str, str]:
    """SHA-256 of the model zip and the statistics file of a resolved source."""
    return {
        "model": file_sha256(files.model_path),
        "vecnorm": file_sha256(files.vecnorm_path),
    }


def _run_worker(folder: Path) -> dict[str, Any]:
    """Run the child on ``folder``; its result, or a PolicyLoadError."""
    # Windows only: idle priority, and no console window flashing up for the child.
    flags = getattr(subprocess, "IDLE_PRIORITY_CLASS", 0) | getattr(
        subprocess, "CREATE_NO_WINDOW", 0
    )
    with open(folder / STDERR_FILE, "wb") as stderr, _workers_lock:
        if threading.current_thread() in _cancelled:
            raise PolicyLoadError("the daemon is stopping; the reload was not started")
        # stdin stays open while this process lives: the child exits when it reads
        # end-of-file, so a daemon that dies (even SIGKILL) leaves no child behind.
        process = subprocess.Popen(
            [sys.executable, "-c", _CHILD_CODE, str(PACKAGE_ROOT), str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            creationflags=flags,
            # its stderr file is read back as UTF-8 (a Windows child would write cp1252)
            env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        )
        _workers[process] = threading.current_thread()
    with process:
        try:
            try:
                code = process.wait(min(IDLE_PRIORITY_S, WORKER_TIMEOUT_S))
            except subprocess.TimeoutExpired:
                if WORKER_TIMEOUT_S <= IDLE_PRIORITY_S:
                    raise
                # No idle CPU for that long: let it progress, still below the daemon.
                raised = raise_priority(process)
                _log.warning(
                    "reload_priority_raised" if raised else "reload_priority_not_raised",
                    waited_s=IDLE_PRIORITY_S,
                    detail="the machine had no idle CPU for the reload; it now runs below "
                    "normal priority"
                    if raised
                    else "the system refused to raise it (Linux needs CAP_SYS_NICE); it "
                    "keeps waiting for idle CPU",
                )
                code = process.wait(WORKER_TIMEOUT_S - IDLE_PRIORITY_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise PolicyLoadError(
                f"loading the model took over {WORKER_TIMEOUT_S:.0f} s and was stopped; "
                "check the machine's load and the model files"
            ) from None
        finally:
            with _workers_lock:
                _workers.pop(process, None)
    try:
        result: dict[str, Any] = json.loads((folder / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        lines = (folder / STDERR_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
        last = lines[-1] if lines else "no output"
        raise PolicyLoadError(
            f"the reload worker stopped (exit code {code}) without a result: {last}"
        ) from None
    return result


def stop_workers(thread: threading.Thread) -> None:
    """Kill the reload child ``thread`` is waiting for, and let that thread start no
    other (the daemon is stopping); its reload then fails and cleans up its folder."""
    with _workers_lock:
        _cancelled.add(thread)
        running = [process for process, owner in _workers.items() if owner is thread]
    for process in running:
        with contextlib.suppress(OSError):
            process.kill()


def hold_workers() -> bool:
    """Stop (``SIGSTOP``) every running reload child; :func:`release_workers` lets them
    go on. The daemon calls the two around each request it answers while a reload is
    loading: on a two-CPU machine the child, even at idle priority, runs on the other
    CPU and competes with the reply for memory bandwidth and the shared cache. Stopped,
    it costs the request two system calls (a few microseconds).

    Returns whether a child was stopped. POSIX only; on Windows nothing is stopped (the
    child runs in ``IDLE_PRIORITY_CLASS``). A child that has just exited is skipped: its
    pid is not reused before it is reaped, and Linux hands out pids in turn.
    """
    if _STOP is None or not _workers:
        return False
    with _workers_lock:
        pids = [process.pid for process in _workers if process.returncode is None]
    for pid in pids:
        try:
            os.kill(pid, _STOP)
        except OSError:
            continue
        _held.append(pid)
    return bool(_held)


def release_workers() -> None:
    """Let the children stopped by :func:`hold_workers` go on (``SIGCONT``)."""
    while _held:
        pid = _held.pop()
        with contextlib.suppress(OSError):
            os.kill(pid, _CONT)  # type: ignore[arg-type]


def _die_with_parent() -> None:
    """Linux: be killed (``SIGKILL``) when the daemon's thread that started this child
    ends, even while stopped by :func:`hold_workers` (a stopped child cannot read the
    end of its stdin). Elsewhere the stdin watcher alone ends an orphaned child."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _exit_when_parent_goes() -> None:
    """Exit as soon as stdin reaches end-of-file: the daemon closed it or died."""
    with contextlib.suppress(OSError, ValueError):
        while sys.stdin.buffer.read(1024):
            pass
    os._exit(3)


def _log_events_to(path: Path) -> None:
    """Write this process's structlog events as JSON lines to ``path``."""
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        logger_factory=structlog.WriteLoggerFactory(file=open(path, "a", encoding="utf-8")),  # noqa: SIM115
        cache_logger_on_first_use=True,
    )


def relay_log_events(path: Path) -> None:
    """Log the child's events again in the daemon's log, marked ``reload_worker``."""
    log = _log
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    for line in lines:
        try:
            event = json.loads(line)
            name = str(event.pop("event"))
            level = str(event.pop("level", "info"))
        except (ValueError, KeyError, AttributeError):
            continue
        event.pop("reload_worker", None)
        method = getattr(log, level if level in _LEVELS else "info")
        method(name, reload_worker=True, **event)


_LEVELS = ("debug", "info", "warning", "error", "critical")


def raise_priority(process: subprocess.Popen[bytes]) -> bool:
    """Move a reload child from idle priority to below normal (nice 10 on POSIX,
    ``BELOW_NORMAL_PRIORITY_CLASS`` on Windows): it now gets a share of a busy CPU,
    still less than the daemon's, so the reload finishes. Returns False where the
    system refuses: Linux lets a process leave ``SCHED_IDLE`` or lower a nice value only
    with ``CAP_SYS_NICE`` (or a raised ``RLIMIT_NICE``)."""
    try:
        if sys.platform == "win32":
            import ctypes

            below_normal = getattr(subprocess, "BELOW_NORMAL_PRIORITY_CLASS", 0x4000)
            handle = int(process._handle)  # type: ignore[attr-defined]
            kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
            return bool(kernel32.SetPriorityClass(handle, below_normal))
        if hasattr(os, "sched_setscheduler"):
            os.sched_setscheduler(process.pid, os.SCHED_OTHER, os.sched_param(0))
        os.setpriority(os.PRIO_PROCESS, process.pid, BELOW_NORMAL_NICE)
    except (OSError, AttributeError, ValueError):
        return False
    return True


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
    job = json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
    source = ModelSource.from_options(**job["source"])
    expected: dict[str, str] = job["sha256"]
    changed = _changed_since_asked(source, expected)
    if changed:
        return {"status": "error", "message": changed}
    try:
        policy = load_policy(source)
    except PolicyLoadError as exc:
        return {"status": "error", "message": str(exc)}
    if policy.sha256 != expected["model"]:  # replaced between the check and the load
        return {"status": "error", "message": _changed_message(source.model_path)}
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
        "package": str(PACKAGE_ROOT),
    }


def _changed_since_asked(source: ModelSource, expected: dict[str, str]) -> str | None:
    """Why ``source``'s files are not the ones the daemon hashed, or None."""
    try:
        hashes = _hashes(source)
    except OSError as exc:
        return f"the model files cannot be read any more ({exc}); nothing was swapped"
    for key, path in (("model", source.model_path), ("vecnorm", source.vecnorm_path)):
        if hashes[key] != expected.get(key):
            return _changed_message(path)
    return None


def _changed_message(path: Path) -> str:
    return (
        f"{path} changed while the reload waited to load it (its SHA-256 is not the one "
        "checked when the reload was asked for); nothing was swapped: reload again once "
        "the file is written"
    )


def main(argv: list[str]) -> NoReturn:
    """``python -m bridge.reload_worker FOLDER``: writes ``FOLDER/result.json``.

    Never returns: the process ends with ``os._exit`` once the result is written (an
    ordinary exit would finalise the interpreter while the stdin watcher holds stdin's
    lock, which aborts with "Fatal Python error" and hides the real error).
    """
    folder = Path(argv[1])
    parent = os.getppid()
    try:
        _die_with_parent()
        if os.getppid() != parent:  # the daemon died before the line above
            os._exit(3)
        run_only_when_idle()
        threading.Thread(target=_exit_when_parent_goes, daemon=True).start()
        _log_events_to(folder / EVENTS_FILE)
        result = work(folder)
    except Exception as exc:
        traceback.print_exc()
        result = {"status": "error", "message": f"the model could not be loaded: {exc!r}"}
    code = 0
    try:
        temporary = folder / (RESULT_FILE + ".tmp")
        temporary.write_text(json.dumps(result), encoding="utf-8")
        os.replace(temporary, folder / RESULT_FILE)
    except OSError:
        traceback.print_exc()  # the daemon reports the last line
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
