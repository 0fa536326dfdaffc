"""mlgov: a self-hosted governance control plane for production machine-learning models.

The public Python API is :class:`Client` (over the REST API) and its exceptions.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
