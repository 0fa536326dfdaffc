"""mlgov: a self-hosted governance control plane for production machine-learning models.

The public Python API is :class:`Client` (over the REST API) and its exceptions.
"""

from __future__ import annotations

__version__ = "0.1.0"

# Below __version__: the client reads it (for its User-Agent) while this module loads.
from mlgov.client import (
    ChecksumMismatch,
    Client,
    Conflict,
    ConnectionFailed,
    InvalidInput,
    MlgovError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ServerError,
    Unauthenticated,
)

__all__ = [
    "ChecksumMismatch",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "InvalidInput",
    "MlgovError",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "ServerError",
    "Unauthenticated",
    "__version__",
]
