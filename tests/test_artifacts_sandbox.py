"""The sandbox runs real child processes: limits are enforced, failures come back as the right
kind of SandboxError, progress arrives in order, and only mlgov tasks can run."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mlgov.artifacts import SandboxError, run_in_sandbox

TASKS = "mlgov.artifacts.sandbox"


def _run(tmp_path: Path, task: str, payload: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"memory_mb": 512, "timeout_s": 30.0, "workdir": tmp_path / "work"}
    options.update(kwargs)
    return run_in_sandbox(f"{TASKS}:{task}", payload, **options)


def test_result_and_progress_in_order(tmp_path: Path) -> None:
    seen: list[tuple[float, str]] = []

    result = _run(
        tmp_path,
        "_selftest_progress",
        {"steps": 4},
        on_progress=lambda fraction, message: seen.append((fraction, message)),
    )

    assert result == {"steps": 4}
    # The task also prints "library chatter": that goes to stderr, never taken for progress.
    assert seen == [(i / 4, f"step {i} of 4") for i in range(1, 5)]


def test_timeout_kills_the_job_at_the_limit(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(SandboxError) as caught:
        _run(tmp_path, "_selftest_sleep", {"seconds": 60}, timeout_s=1.5)
    elapsed = time.monotonic() - started

    assert caught.value.kind == "timeout"
    assert caught.value.message == "the job exceeded its time limit of 1.5 s"
    assert 1.5 <= elapsed < 4.0


def test_memory_limit(tmp_path: Path) -> None:
    with pytest.raises(SandboxError) as caught:
        _run(tmp_path, "_selftest_allocate", {"mib": 2048}, memory_mb=256)

    assert caught.value.kind == "memory"
    assert caught.value.message == "the job exceeded its memory limit of 256 MiB"


def test_task_exception_is_an_error_with_its_message(tmp_path: Path) -> None:
    with pytest.raises(SandboxError) as caught:
        _run(tmp_path, "_selftest_raise", {"message": "columns missing: income"})

    assert caught.value.kind == "error"
    assert caught.value.message == "ValueError: columns missing: income"
    assert str(caught.value) == caught.value.message
    assert "Traceback" in caught.value.detail


def test_death_without_a_result_is_a_crash_with_stderr(tmp_path: Path) -> None:
    with pytest.raises(SandboxError) as caught:
        _run(tmp_path, "_selftest_crash", {"stderr": "segfault-ish trouble", "code": 7})

    assert caught.value.kind == "crashed"
    assert caught.value.message == (
        "the job crashed (exit code 7) without a result; its last output: segfault-ish trouble"
    )


@pytest.mark.parametrize(
    "task",
    [
        "os:system",
        "subprocess:run",
        "mlgovx.evil:run",
        "mlgov:__import__('os')",
        "mlgov.artifacts.sandbox",
        " mlgov.artifacts.sandbox:_selftest_sleep",
    ],
)
def test_only_mlgov_functions_can_be_tasks(tmp_path: Path, task: str) -> None:
    with pytest.raises(ValueError, match="mlgov"):
        run_in_sandbox(task, {}, memory_mb=256, timeout_s=5, workdir=tmp_path)
    assert not any(tmp_path.iterdir())  # refused before anything was started


def test_unknown_mlgov_function_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxError) as caught:
        _run(tmp_path, "_no_such_task", {})
    assert caught.value.kind == "error"
    assert "is not a function" in caught.value.message


def test_runs_from_worker_threads_and_cleans_up(tmp_path: Path) -> None:
    outcomes: dict[int, Any] = {}

    def job(index: int) -> None:
        try:
            outcomes[index] = _run(tmp_path, "_selftest_progress", {"steps": index + 1})
        except SandboxError as exc:  # pragma: no cover - reported by the assertion below
            outcomes[index] = exc

    threads = [threading.Thread(target=job, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert outcomes == {i: {"steps": i + 1} for i in range(3)}
    assert list((tmp_path / "work").iterdir()) == []


def _sandbox_children(marker: str) -> list[int]:
    """Pids of sandbox child processes whose command line mentions ``marker``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "-m mlgov.artifacts.sandbox " in cmdline and marker in cmdline:
            found.append(int(proc.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux's /proc")
def test_the_child_dies_with_a_killed_worker(tmp_path: Path) -> None:
    """A worker killed with -9 leaves no model-loading process behind."""
    import os
    import signal
    import subprocess
    import sys

    work = tmp_path / "killed-worker"
    script = (
        "from pathlib import Path\n"
        "from mlgov.artifacts import run_in_sandbox\n"
        f"run_in_sandbox('{TASKS}:_selftest_sleep', {{'seconds': 60}}, memory_mb=512, "
        f"timeout_s=60, workdir=Path({str(work)!r}))\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 20
        while not (children := _sandbox_children(str(work))):
            assert time.monotonic() < deadline, "the sandbox child never started"
            time.sleep(0.05)
        # Let it reach its task (a child killed earlier dies anyway, of a broken pipe when it
        # reports progress to nobody; a model being loaded or a check running reports nothing).
        time.sleep(2)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        deadline = time.monotonic() + 10
        while _sandbox_children(str(work)):
            assert time.monotonic() < deadline, f"sandbox child {children} outlived its worker"
            time.sleep(0.05)
    finally:
        if worker.poll() is None:
            worker.kill()
