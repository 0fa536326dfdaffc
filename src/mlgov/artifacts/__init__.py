"""Model artifacts: scanning at registration, safe loading, and the sandbox that loads them.

* :mod:`~mlgov.artifacts.scan` checks an uploaded artifact without ever loading it (the registry
  runs it in the API process): :func:`scan_artifact` / :func:`scan_or_raise` and the
  :class:`ScanPolicy` an admin controls.
* :mod:`~mlgov.artifacts.loaders` loads a scanned artifact behind one predict interface
  (:func:`load_model`, :class:`LoadedModel`); only ever called inside the sandbox child.
* :mod:`~mlgov.artifacts.sandbox` runs an ``mlgov.*`` task in a separate, memory- and
  time-limited process and returns its JSON result (:func:`run_in_sandbox`).
* :mod:`~mlgov.artifacts.archive` reads zip and tar archives (MLflow models) safely.

Names are imported lazily, so the sandbox child (``python -m mlgov.artifacts.sandbox``) starts
without the scanners' dependencies and sets its resource limits before anything heavy loads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlgov.artifacts.loaders import LoadedModel, load_model
    from mlgov.artifacts.sandbox import SandboxError, run_in_sandbox
    from mlgov.artifacts.scan import (
        ArtifactRejected,
        Finding,
        ScanPolicy,
        ScanReport,
        scan_artifact,
        scan_or_raise,
    )

__all__ = [
    "ArtifactRejected",
    "Finding",
    "LoadedModel",
    "SandboxError",
    "ScanPolicy",
    "ScanReport",
    "load_model",
    "run_in_sandbox",
    "scan_artifact",
    "scan_or_raise",
]

_HOMES = {
    "ArtifactRejected": "scan",
    "Finding": "scan",
    "ScanPolicy": "scan",
    "ScanReport": "scan",
    "scan_artifact": "scan",
    "scan_or_raise": "scan",
    "LoadedModel": "loaders",
    "load_model": "loaders",
    "SandboxError": "sandbox",
    "run_in_sandbox": "sandbox",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
