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
}

DEFAULT_MAX_ARTIFACT_BYTES = 2 * 1024**3
DEFAULT_MAX_REQUEST_BYTES = 1024**2


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of bytes, got {raw!r}") from None
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
        )


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'mlgov.db'}"
