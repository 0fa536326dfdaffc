"""The validation worker: claims jobs, fetches what they need, runs them in a sandbox.

For each job it copies the model artifacts (the candidate and, for champion/challenger, the
production version) and the dataset's data into a private working directory, checking every
byte against its registered sha256; then runs :func:`mlgov.validation.execute.execute` in a
child process with a memory and a time limit (:mod:`mlgov.artifacts.sandbox`): models are
loaded there and nowhere else. The report and the files the checks wrote go to the artifact
store; the results go to :meth:`ValidationService.complete`. Any error (data that does not
match, a model that raises, a limit exceeded) fails the job with its message; the worker goes
on with the next one.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from mlgov.artifacts.sandbox import SandboxError, run_in_sandbox
from mlgov.errors import Conflict
from mlgov.storage import ArtifactStore, StoredArtifact, s3_client_from_env
from mlgov.validation.service import Claim, ValidationService

log = logging.getLogger("mlgov.validation")

EXECUTE = "mlgov.validation.execute:execute"
#: The lease is renewed this often while a job runs (well inside LEASE_SECONDS).
HEARTBEAT_SECONDS = 15.0
#: Largest single file a check may attach (the report included).
MAX_ATTACHMENT_BYTES = 256 * 1024**2


class JobError(Exception):
    """A job cannot run; the message says why, for the job's ``error``."""


@dataclass(frozen=True)
class RunnerLimits:
    memory_mb: int = 4096
    timeout_seconds: float = 3600.0


class ValidationRunner:
    def __init__(
        self,
        validation: ValidationService,
        store: ArtifactStore,
        work_dir: Path,
        *,
        dataset_roots: Sequence[Path] = (),
        limits: RunnerLimits = RunnerLimits(),
        name: str | None = None,
    ) -> None:
        self.validation = validation
        self.store = store
        self.work_dir = work_dir
        self.dataset_roots = [Path(p).resolve() for p in dataset_roots]
        self.limits = limits
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"

    # -- loop ----------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Claim and run at most one job; the number run (0 or 1)."""
        claim = self.validation.claim(self.name)
        if claim is None:
            return 0
        self.run(claim)
        return 1

    def run_forever(self, stop: threading.Event, poll_seconds: float = 1.0) -> None:
        while not stop.is_set():
            try:
                ran = self.run_once()
            except Exception:  # the loop must survive anything: log it and carry on
                log.exception("validation worker pass failed")
                ran = 0
            if not ran:
                stop.wait(poll_seconds)

    # -- one job ------------------------------------------------------------------------------

    def run(self, claim: Claim) -> None:
        workdir = self.work_dir / f"job-{claim.job_id}-{claim.attempt}"
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True, mode=0o700)
        started = time.monotonic()
        stop = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat, args=(claim, stop), name=f"job-{claim.job_id}", daemon=True
        )
        beat.start()
        try:
            try:
                result = self._execute(claim, workdir)
                checks = list(result.get("checks", []))
                if not checks:
                    raise JobError("the suite produced no checks (its checks section is empty)")
                report, attachments = self._store_outputs(result, workdir)
            except (JobError, SandboxError) as exc:
                message = str(exc) if isinstance(exc, JobError) else exc.message
                log.info("validation job #%s failed: %s", claim.job_id, message)
                self._fail(claim, message)
                return
            except Exception as exc:  # a bug or an unexpected failure: still the job's error
                log.exception("validation job #%s failed unexpectedly", claim.job_id)
                self._fail(claim, f"internal error: {type(exc).__name__}: {exc}")
                return
            try:
                self.validation.complete(
                    claim, checks, report, attachments, round(time.monotonic() - started, 3)
                )
            except Conflict as exc:
                log.warning("validation job #%s: %s", claim.job_id, exc.detail)
            except Exception as exc:
                log.exception("validation job #%s: recording its results failed", claim.job_id)
                self._fail(claim, f"recording the results failed: {type(exc).__name__}: {exc}")
        finally:
            stop.set()
            beat.join(timeout=5)
            shutil.rmtree(workdir, ignore_errors=True)

    def _fail(self, claim: Claim, message: str) -> None:
        try:
            self.validation.fail(claim, message)
        except Conflict as exc:
            log.warning("validation job #%s: %s", claim.job_id, exc.detail)

    def _heartbeat(self, claim: Claim, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                if not self.validation.heartbeat(claim):
                    log.warning("validation job #%s: lease lost", claim.job_id)
                    return
            except Exception:
                log.exception("validation job #%s: heartbeat failed", claim.job_id)

    def _execute(self, claim: Claim, workdir: Path) -> dict[str, Any]:
        inputs = workdir / "inputs"
        inputs.mkdir()
        out_dir = workdir / "out"
        out_dir.mkdir()
        candidate = self._fetch_artifact(claim.candidate.sha256, inputs / "candidate")
        champion = None
        if claim.champion is not None:
            champion = self._fetch_artifact(claim.champion.sha256, inputs / "champion")
        data_path, data_format = self._fetch_dataset(claim.dataset, inputs)
        payload = {
            "suite": claim.suite["definition"],
            "suite_ref": {k: claim.suite[k] for k in ("name", "version", "sha256")},
            "model": {
                "name": claim.candidate.model,
                "version": claim.candidate.version,
                "path": str(candidate),
                "format": claim.candidate.format,
                "signature": claim.candidate.signature,
                "recorded": claim.recorded,
            },
            "champion": None
            if claim.champion is None or champion is None
            else {
                "name": claim.champion.model,
                "version": claim.champion.version,
                "path": str(champion),
                "format": claim.champion.format,
                "signature": claim.champion.signature,
            },
            "dataset": {
                "name": claim.dataset["name"],
                "version": claim.dataset["version"],
                "path": str(data_path),
                "format": data_format,
                "sha256": claim.dataset["sha256"],
            },
            "scan_policy": claim.scan_policy,
            "requested_by": claim.requested_by,
            "requested_at": claim.requested_at.isoformat(),
            "out_dir": str(out_dir),
        }

        def progress(fraction: float, message: str) -> None:
            self.validation.heartbeat(claim, fraction, message)

        return run_in_sandbox(
            EXECUTE,
            payload,
            memory_mb=self.limits.memory_mb,
            timeout_s=self.limits.timeout_seconds,
            workdir=workdir,
            on_progress=progress,
        )

    # -- inputs --------------------------------------------------------------------------------

    def _fetch_artifact(self, sha256: str, dest: Path) -> Path:
        _copy_checked(self.store.open(sha256), dest, sha256, "the model artifact")
        return dest

    def _fetch_dataset(self, dataset: dict[str, Any], inputs: Path) -> tuple[Path, str]:
        label = f"{dataset['name']}@{dataset['version']}"
        sha = dataset["sha256"]
        if dataset["data_format"] is not None:
            fmt = str(dataset["data_format"])
            dest = inputs / f"data.{fmt}"
            _copy_checked(self.store.open(sha), dest, sha, f"the data of {label}")
            return dest, fmt
        uri = str(dataset["uri"])
        parsed = urlparse(uri)
        fmt = _format_of(parsed.path)
        dest = inputs / f"data.{fmt}{'.gz' if parsed.path.endswith('.gz') else ''}"
        if parsed.scheme == "file":
            path = Path(unquote(parsed.path)).resolve()
            if not any(path.is_relative_to(root) for root in self.dataset_roots):
                raise JobError(
                    f"the data of {label} is at {path}, outside the directories the worker may "
                    "read (MLGOV_DATASET_ROOTS); upload it instead (mlgov datasets upload-data)"
                )
            if not path.is_file():
                raise JobError(f"the data of {label} is not at {path} (no such file)")
            _copy_checked(_file_chunks(path), dest, sha, f"the data of {label} ({uri})")
        elif parsed.scheme == "s3":
            client = s3_client_from_env()
            try:
                body = client.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"]
            except Exception as exc:
                raise JobError(f"the data of {label} could not be read from {uri}: {exc}") from exc
            _copy_checked(iter(lambda: body.read(1 << 20), b""), dest, sha, f"the data of {label}")
        else:
            raise JobError(f"the worker cannot read {uri}: upload the data of {label} instead")
        return dest, fmt

    # -- outputs -------------------------------------------------------------------------------

    def _store_outputs(
        self, result: dict[str, Any], workdir: Path
    ) -> tuple[StoredArtifact, dict[str, list[dict[str, Any]]]]:
        report = result.get("report") or {}
        report_path = _inside(workdir, report.get("path"))
        if report_path is None:
            raise JobError("the run produced no report")
        stored_report = self._put(report_path)
        attachments: dict[str, list[dict[str, Any]]] = {}
        for check in result.get("checks", []):
            items = []
            for item in check.get("attachments", []):
                path = _inside(workdir, item.get("path"))
                if path is None:
                    continue
                stored = self._put(path)
                name = str(item.get("name") or path.name)[:128]
                items.append(
                    {
                        "name": name,
                        "media_type": item.get("media_type")
                        or mimetypes.guess_type(name)[0]
                        or "application/octet-stream",
                        "size": stored.size,
                        "sha256": stored.sha256,
                    }
                )
            attachments[str(check.get("kind"))] = items
        return stored_report, attachments

    def _put(self, path: Path) -> StoredArtifact:
        with self.store.writer(MAX_ATTACHMENT_BYTES) as writer:
            for chunk in _file_chunks(path):
                writer.write(chunk)
            return writer.commit()


def _format_of(path: str) -> str:
    lowered = path.lower().removesuffix(".gz")
    return "parquet" if lowered.endswith((".parquet", ".pq")) else "csv"


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


def _copy_checked(chunks: Iterator[bytes], dest: Path, sha256: str, what: str) -> None:
    digest = hashlib.sha256()
    with dest.open("wb") as f:
        for chunk in chunks:
            digest.update(chunk)
            f.write(chunk)
    if digest.hexdigest() != sha256:
        raise JobError(
            f"{what} does not match its registered sha256 (expected {sha256}, read "
            f"{digest.hexdigest()}): it changed since it was registered"
        )


def _inside(root: Path, raw: Any) -> Path | None:
    """A path the child reported, only if it is a file inside the job's directory."""
    if not isinstance(raw, str) or not raw:
        return None
    path = Path(raw).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        return None
    return path
