"""Where the CLI keeps its server URL and API token, and how it builds a :class:`Client`.

The credentials live in a JSON file, ``$MLGOV_CONFIG`` or ``~/.config/mlgov/config.json``,
written by ``mlgov login``: the file is created with mode 0600 (never readable by others, not
even for an instant) and a directory we create gets 0700. ``MLGOV_URL`` and ``MLGOV_TOKEN``
override the file, each on its own (handy in CI, where nothing is written to disk).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from mlgov.cli.output import CliError, warn
from mlgov.client import Client

CONFIG_ENV = "MLGOV_CONFIG"
URL_ENV = "MLGOV_URL"
TOKEN_ENV = "MLGOV_TOKEN"


@dataclass(frozen=True)
class Credentials:
    url: str
    token: str = field(repr=False)


def config_path() -> Path:
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    return Path.home() / ".config" / "mlgov" / "config.json"


def read_config() -> dict[str, str]:
    """The saved settings, or ``{}`` when there is no config file."""
    path = config_path()
    try:
        mode = path.stat().st_mode
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warn(f"{path} is readable by other users; run: chmod 600 {path}")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise CliError(f"{path} is not valid JSON ({exc}); run mlgov login again") from None
    if not isinstance(data, dict):
        raise CliError(f"{path} does not hold a JSON object; run mlgov login again")
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def write_config(url: str, token: str) -> Path:
    """Save the credentials atomically in a new 0600 file that replaces the old one."""
    path = config_path()
    directory = path.parent
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    tmp = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump({"url": url, "token": token}, file, indent=2)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def remove_config() -> Path | None:
    """Delete the config file; return its path, or None if there was none."""
    path = config_path()
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    return path


def credentials() -> Credentials:
    saved = read_config()
    url = os.environ.get(URL_ENV) or saved.get("url")
    token = os.environ.get(TOKEN_ENV) or saved.get("token")
    if not url or not token:
        raise CliError(
            "not logged in: run `mlgov login --url URL` (or set MLGOV_URL and MLGOV_TOKEN)"
        )
    return Credentials(url=url.rstrip("/"), token=token)


def connect() -> Client:
    """A client for the configured server (use it in a ``with`` block)."""
    creds = credentials()
    return Client(creds.url, creds.token)
