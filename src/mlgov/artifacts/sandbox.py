"""Running a task in a separate, resource-limited child process.

Validation jobs load user models, so they do it in a child process rather than in the worker:
:func:`run_in_sandbox` starts ``python -m mlgov.artifacts.sandbox`` (no shell, a new session so
the whole process group can be killed) with the task and its payload in a JSON file. The child
caps its address space (``RLIMIT_AS``, so ``memory_mb`` must also cover the libraries it imports:
scikit-learn, onnxruntime, xgboost and LightGBM together take about 600 MiB before any model) and
its CPU time (a backstop to the parent's wall-clock limit), then imports the task, calls
``fn(payload, progress)`` and writes the JSON result to a file. Progress lines arrive on the
child's stdout (library chatter is sent to stderr) and are handed to ``on_progress`` as they come.

Only ``mlgov.*`` functions can be tasks, and only JSON crosses back: the parent never unpickles
anything from the child. Failures become :class:`SandboxError` with a ``kind``:

* ``timeout``: the wall-clock (or CPU) limit was reached and the process group was killed;
* ``memory``: the child ran out of its memory limit (MemoryError, or killed by the kernel);
* ``error``: the task raised; the message is the child's ``"Type: message"``;
* ``crashed``: the child died without a result; the message ends with its last stderr output.

The parent installs no signal handlers, so it can run from any thread of the worker.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["SandboxError", "run_in_sandbox"]

Progress = Callable[[float, str], None]

_TASK = re.compile(r"mlgov(\.[A-Za-z_][A-Za-z0-9_]*)+:[A-Za-z_][A-Za-z0-9_]*")
_MIB = 1024 * 1024
_STDERR_TAIL = 2048
_RESULT_LIMIT = 256 * _MIB
_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MALLOC_ARENA_MAX": "2",
}
_MEMORY_HINTS = (
    "MemoryError",
    "bad_alloc",
    "bad allocation",
    "Cannot allocate memory",
    "out of memory",
)


class SandboxError(Exception):
    """A sandboxed task did not return a result; ``kind`` says how, ``message`` in words."""

    def __init__(self, kind: str, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.kind = kind  # "timeout" | "memory" | "crashed" | "error"
        self.message = message
        self.detail = detail  # the child's traceback or stderr tail, for logs


def run_in_sandbox(
    task: str,
    payload: dict[str, Any],
    *,
    memory_mb: int,
    timeout_s: float,
    workdir: Path,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Run ``task`` ("mlgov.module:function") on ``payload`` in a child process; its result."""
    if not _TASK.fullmatch(task):
        raise ValueError(f"sandbox tasks must be 'mlgov.<module>:<function>', not {task!r}")
    if memory_mb <= 0 or not timeout_s > 0:
        raise ValueError("memory_mb and timeout_s must be positive")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    job = Path(tempfile.mkdtemp(prefix="sandbox-", dir=workdir))
    try:
        return _run(task, payload, memory_mb, timeout_s, job, on_progress)
    finally:
        shutil.rmtree(job, ignore_errors=True)


def _run(
    task: str,
    payload: dict[str, Any],
    memory_mb: int,
    timeout_s: float,
    job: Path,
    on_progress: Progress | None,
) -> dict[str, Any]:
    request, result, stderr = job / "request.json", job / "result.json", job / "stderr.log"
    request.write_text(
        json.dumps(
            {
                "task": task,
                "payload": payload,
                "memory_mb": memory_mb,
                "timeout_s": timeout_s,
                "result": str(result),
                "parent": os.getpid(),
            },
            default=_json_default,
        ),
        encoding="utf-8",
    )
    deadline = time.monotonic() + timeout_s
    with stderr.open("wb") as err:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            # -P: nothing from the working directory shadows an import.
            [sys.executable, "-P", "-m", "mlgov.artifacts.sandbox", str(request)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=job,
            env={**os.environ, **_THREAD_ENV},
            start_new_session=True,
            close_fds=True,
        )
    timed_out = False
    try:
        timed_out = _follow(proc, deadline, on_progress)
    finally:
        if timed_out or proc.poll() is None:
            _kill_group(proc)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    if timed_out:
        raise SandboxError("timeout", f"the job exceeded its time limit of {timeout_s:g} s")
    outcome = _read_result(result)
    if outcome is not None and "error" in outcome:
        detail = str(outcome.get("traceback", ""))
        error = str(outcome["error"])
        # Native libraries (onnxruntime, xgboost) report a failed allocation as their own error.
        if outcome.get("type") == "MemoryError" or any(h in error for h in _MEMORY_HINTS):
            raise SandboxError(
                "memory", f"the job exceeded its memory limit of {memory_mb} MiB", detail=detail
            )
        raise SandboxError("error", error, detail=detail)
    if outcome is not None and proc.returncode == 0 and "result" in outcome:
        value = outcome["result"]
        if not isinstance(value, dict):
            raise SandboxError("error", "the task returned a value that is not a JSON object")
        return value

    tail = _tail(stderr)
    code = proc.returncode
    if code == -signal.SIGXCPU:
        cpu = math.ceil(timeout_s) + 5
        raise SandboxError(
            "timeout", f"the job exceeded its CPU time limit of {cpu} s", detail=tail
        )
    if code == -signal.SIGKILL or any(hint in tail for hint in _MEMORY_HINTS):
        raise SandboxError(
            "memory", f"the job exceeded its memory limit of {memory_mb} MiB", detail=tail
        )
    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    message = f"the job crashed ({how}) without a result"
    if tail:
        message += f"; its last output: {tail}"
    raise SandboxError("crashed", message, detail=tail)


def _follow(proc: subprocess.Popen[bytes], deadline: float, on_progress: Progress | None) -> bool:
    """Relay progress lines until the child exits; True when the deadline passed first."""
    assert proc.stdout is not None
    lines: queue.Queue[bytes | None] = queue.Queue()

    def read(stream: IO[bytes]) -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, args=(proc.stdout,), daemon=True).start()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            return True
        if line is None:
            break
        if on_progress is not None:
            update = _parse_progress(line)
            if update is not None:
                on_progress(*update)
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return True
    return False


def _parse_progress(line: bytes) -> tuple[float, str] | None:
    try:
        data = json.loads(line)
        return float(data["progress"]), str(data.get("message", ""))
    except (ValueError, KeyError, TypeError):
        return None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        if path.stat().st_size > _RESULT_LIMIT:
            return {"error": "SandboxError: the task's result is too large", "type": "ValueError"}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as stream:
            stream.seek(max(0, path.stat().st_size - _STDERR_TAIL))
            return stream.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _json_default(value: Any) -> Any:
    """numpy arrays and scalars (anything with tolist/item), paths, sets and tuples."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


# -- the child ----------------------------------------------------------------------------------


def _child_main(argv: list[str]) -> int:
    request = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    result = Path(request["result"])
    _die_with_parent(int(request.get("parent", 0)))
    progress_stream = _take_stdout()
    _limit_resources(int(request["memory_mb"]), float(request["timeout_s"]))

    def progress(fraction: float, message: str = "") -> None:
        line = json.dumps({"progress": float(fraction), "message": str(message)})
        progress_stream.write(line + "\n")
        progress_stream.flush()

    try:
        fn = _resolve(str(request["task"]))
        value = fn(request["payload"], progress)
        text = json.dumps({"result": value}, default=_json_default)
    except MemoryError:
        _write(result, {"error": "MemoryError: out of memory", "type": "MemoryError"})
        return 1
    except Exception as exc:  # noqa: BLE001 - every failure is reported to the parent as JSON
        _write(
            result,
            {
                "error": f"{type(exc).__name__}: {exc}",
                "type": type(exc).__name__,
                "traceback": traceback.format_exc()[-8192:],
            },
        )
        return 1
    tmp = result.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(result)
    return 0


def _take_stdout() -> IO[str]:
    """Keep the real stdout for progress lines and send fd 1 (library prints) to stderr."""
    sys.stdout.flush()
    fd = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(fd, "w", encoding="utf-8")


def _die_with_parent(parent: int) -> None:
    """On Linux, be killed when the worker that started this process dies (kill -9, out of
    memory): nobody would read the result, and the job is taken again elsewhere; without this
    the child would run on unobserved until its time limit."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if parent and os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _limit_resources(memory_mb: int, timeout_s: float) -> None:
    import resource

    def limit(which: int, soft: int, hard: int) -> None:
        _current_soft, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        resource.setrlimit(which, (soft, hard))

    memory = memory_mb * _MIB
    limit(resource.RLIMIT_AS, memory, memory)
    cpu = math.ceil(timeout_s) + 5
    # SIGXCPU at the soft limit; the kernel's SIGKILL at the hard one only if that is ignored.
    limit(resource.RLIMIT_CPU, cpu, cpu + 5)
    limit(resource.RLIMIT_CORE, 0, 0)


def _resolve(task: str) -> Callable[[dict[str, Any], Progress], Any]:
    if not _TASK.fullmatch(task):
        raise ValueError(f"sandbox tasks must be 'mlgov.<module>:<function>', not {task!r}")
    module_name, _, name = task.partition(":")
    fn = getattr(importlib.import_module(module_name), name, None)
    if not callable(fn):
        raise ValueError(f"{task} is not a function")
    return fn  # type: ignore[no-any-return]


def _write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, default=_json_default), encoding="utf-8")


# -- small tasks, for tests and for checking a model end to end ---------------------------------


def _selftest_predict(payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Load payload["path"] as payload["format"] and predict payload["rows"] (a list of dicts).

    Optional: "allow_pickle", "trusted_types" (the admin policy) and "signature". Returns
    {"predictions": [...], "proba": [[...], ...] or None, "classes", "feature_names"}.
    """
    progress(0.1, "loading the model")
    result = _predict_rows(payload)
    progress(1.0, "done")
    return result


def _selftest_predict_many(payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """:func:`_selftest_predict` for each of payload["jobs"] in one child (libraries load once).

    Returns {"results": [...]} in job order; a job that fails gives {"error": "Type: message"}.
    """
    jobs = list(payload.get("jobs") or [])
    results: list[dict[str, Any]] = []
    for index, job in enumerate(jobs):
        progress(index / max(len(jobs), 1), f"job {index + 1} of {len(jobs)}")
        try:
            results.append(_predict_rows(job))
        except Exception as exc:  # noqa: BLE001 - reported per job, the others still run
            results.append({"error": f"{type(exc).__name__}: {exc}"})
    progress(1.0, "done")
    return {"results": results}


def _predict_rows(payload: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd  # type: ignore[import-untyped]

    from mlgov.artifacts.loaders import load_model
    from mlgov.artifacts.scan import ScanPolicy

    policy = ScanPolicy(
        allow_pickle=bool(payload.get("allow_pickle", False)),
        trusted_types=tuple(str(t) for t in payload.get("trusted_types", ())),
    )
    model = load_model(
        Path(payload["path"]), str(payload["format"]), policy, signature=payload.get("signature")
    )
    rows = payload.get("rows") or []
    X = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
    predictions = model.predict(X)
    proba = model.predict_proba(X)
    return {
        "predictions": predictions.tolist(),
        "proba": proba.tolist() if proba is not None else None,
        "classes": model.classes,
        "feature_names": model.feature_names,
    }


def _selftest_sleep(payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    progress(0.0, "sleeping")
    time.sleep(float(payload.get("seconds", 60)))
    return {"slept": payload.get("seconds", 60)}


def _selftest_allocate(payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    block = bytearray(int(payload.get("mib", 2048)) * _MIB)
    return {"allocated": len(block)}


def _selftest_raise(payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    raise ValueError(str(payload.get("message", "the task failed on purpose")))


def _selftest_progress(payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    steps = int(payload.get("steps", 5))
    for step in range(1, steps + 1):
        print(f"library chatter {step}")  # must not be taken for a progress line
        progress(step / steps, f"step {step} of {steps}")
    return {"steps": steps}


def _selftest_crash(payload: dict[str, Any], progress: Progress) -> dict[str, Any]:
    sys.stderr.write(str(payload.get("stderr", "about to crash")) + "\n")
    sys.stderr.flush()
    os._exit(int(payload.get("code", 3)))


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv))
