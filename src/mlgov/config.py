"""Server settings, read once from the environment (every variable is documented in
docs/operations.md; a test keeps that list complete)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

#: Every environment variable the server reads, with its meaning. docs/operations.md lists them all.
SETTINGS_DOC: dict[str, str] = {
    "MLGOV_DATA_DIR": "Directory of the SQLite database, local artifacts and keys (./data).",
    "MLGOV_DATABASE_URL": "SQLAlchemy URL of the database; postgresql://… selects PostgreSQL.",
    "MLGOV_ARTIFACTS_URL": (
        "Artifact store: empty for <data dir>/artifacts, file:///path or s3://bucket/prefix."
    ),
    "MLGOV_S3_ENDPOINT_URL": "Endpoint of an S3-compatible server (MinIO, Ceph, …); unset for AWS.",
    "MLGOV_BOOTSTRAP_ADMIN_TOKEN": "On first start, the admin's API token (for automation).",
    "MLGOV_MAX_ARTIFACT_BYTES": "Largest artifact accepted on upload (default 2 GiB).",
    "MLGOV_MAX_REQUEST_BYTES": "Largest non-upload request body (default 1 MiB).",
    "MLGOV_SIGNING_KEY_FILE": (
        "Ed25519 key that signs audit checkpoints (PRIVATE+KEY+… note format); default "
        "<data dir>/audit-signing.key, generated on first start."
    ),
    "MLGOV_AUDIT_ORIGIN": (
        "Origin line of the audit log's checkpoints (default: <key name>/audit). Keep it "
        "when rotating keys."
    ),
    "MLGOV_CHECKPOINT_EVERY": "Sign a checkpoint at least every this many events (default 1000).",
    "MLGOV_CHECKPOINT_INTERVAL": (
        "Sign a checkpoint at least every this many seconds when events arrived (default 60)."
    ),
    "MLGOV_SECRET_KEY_FILE": (
        "AES-256 key that encrypts webhook secrets at rest (32 bytes, base64); default "
        "<data dir>/secret.key, generated on first start. Back it up: without it the stored "
        "webhook secrets cannot be read."
    ),
    "MLGOV_EMBEDDED_WORKER": (
        "1 or true: the server also runs the worker (webhook deliveries and validation jobs) "
        "in threads (default off: run `mlgov worker`)."
    ),
    "MLGOV_JOB_MEMORY_MB": (
        "Memory limit (address space) of the process that loads models for a validation job "
        "(default 4096)."
    ),
    "MLGOV_JOB_TIMEOUT": "Time limit of one validation job, in seconds (default 3600).",
    "MLGOV_DATASET_ROOTS": (
        "Directories (separated by ':') under which the worker may read dataset versions "
        "registered with a file:// URI (default: the data directory). Data uploaded to the "
        "server needs none."
    ),
}

DEFAULT_MAX_ARTIFACT_BYTES = 2 * 1024**3
DEFAULT_MAX_REQUEST_BYTES = 1024**2
DEFAULT_CHECKPOINT_EVERY = 1000
DEFAULT_CHECKPOINT_INTERVAL = 60
DEFAULT_JOB_MEMORY_MB = 4096
DEFAULT_JOB_TIMEOUT = 3600


def _path_env(name: str) -> Path | None:
    raw = os.environ.get(name, "").strip()
    return Path(raw).resolve() if raw else None


def _paths_env(name: str) -> tuple[Path, ...] | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    return tuple(Path(p).resolve() for p in raw.split(os.pathsep) if p.strip())


def _bool_env(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{name} must be 1/true or 0/false, got {raw!r}")


def _int_env(name: str, default: int, unit: str = "bytes") -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of {unit}, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    artifacts_url: str | None = None
    bootstrap_admin_token: str | None = field(default=None, repr=False)
    max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    signing_key_file: Path | None = None
    audit_origin: str | None = None
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
    checkpoint_interval: int = DEFAULT_CHECKPOINT_INTERVAL
    secret_key_file: Path | None = None
    embedded_worker: bool = False
    job_memory_mb: int = DEFAULT_JOB_MEMORY_MB
    job_timeout: int = DEFAULT_JOB_TIMEOUT
    dataset_roots: tuple[Path, ...] | None = None

    @property
    def readable_dataset_roots(self) -> tuple[Path, ...]:
        return self.dataset_roots if self.dataset_roots is not None else (self.data_dir,)

    @property
    def jobs_dir(self) -> Path:
        """Working directories of validation jobs (each removed when its job ends)."""
        return self.data_dir / "tmp" / "jobs"

    @property
    def signing_key_path(self) -> Path:
        return self.signing_key_file or self.data_dir / "audit-signing.key"

    @property
    def scan_dir(self) -> Path:
        """Where uploads are copied for the scan (removed right after)."""
        return self.data_dir / "tmp" / "scan"

    @property
    def secret_key_path(self) -> Path:
        return self.secret_key_file or self.data_dir / "secret.key"

    @classmethod
    def from_env(cls, data_dir: Path | str | None = None) -> Settings:
        directory = Path(data_dir or os.environ.get("MLGOV_DATA_DIR") or "data").resolve()
        url = os.environ.get("MLGOV_DATABASE_URL") or sqlite_url(directory)
        return cls(
            data_dir=directory,
            database_url=url,
            artifacts_url=os.environ.get("MLGOV_ARTIFACTS_URL") or None,
            bootstrap_admin_token=os.environ.get("MLGOV_BOOTSTRAP_ADMIN_TOKEN") or None,
            max_artifact_bytes=_int_env("MLGOV_MAX_ARTIFACT_BYTES", DEFAULT_MAX_ARTIFACT_BYTES),
            max_request_bytes=_int_env("MLGOV_MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES),
            signing_key_file=_path_env("MLGOV_SIGNING_KEY_FILE"),
            audit_origin=os.environ.get("MLGOV_AUDIT_ORIGIN", "").strip() or None,
            checkpoint_every=_int_env(
                "MLGOV_CHECKPOINT_EVERY", DEFAULT_CHECKPOINT_EVERY, unit="events"
            ),
            checkpoint_interval=_int_env(
                "MLGOV_CHECKPOINT_INTERVAL", DEFAULT_CHECKPOINT_INTERVAL, unit="seconds"
            ),
            secret_key_file=_path_env("MLGOV_SECRET_KEY_FILE"),
            embedded_worker=_bool_env("MLGOV_EMBEDDED_WORKER"),
            job_memory_mb=_int_env("MLGOV_JOB_MEMORY_MB", DEFAULT_JOB_MEMORY_MB, unit="MiB"),
            job_timeout=_int_env("MLGOV_JOB_TIMEOUT", DEFAULT_JOB_TIMEOUT, unit="seconds"),
            dataset_roots=_paths_env("MLGOV_DATASET_ROOTS"),
        )


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'mlgov.db'}"
