"""The public Python API is small and explicit: ``mlgov.__all__`` is exactly the client, its
exceptions and the version, and every name in it imports."""

from __future__ import annotations

import importlib

import mlgov

PUBLIC = {
    "__version__",
    "Client",
    "MlgovError",
    "InvalidInput",
    "Unauthenticated",
    "PermissionDenied",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "ServerError",
    "ConnectionFailed",
    "ChecksumMismatch",
}


def test_all_is_exactly_the_public_api():
    assert set(mlgov.__all__) == PUBLIC
    assert len(mlgov.__all__) == len(PUBLIC)


def test_every_public_name_imports():
    module = importlib.import_module("mlgov")
    for name in mlgov.__all__:
        assert getattr(module, name) is not None, name
        exec(f"from mlgov import {name}", {})


def test_version_and_docstring():
    assert mlgov.__version__ == "0.1.0"
    assert mlgov.__doc__ and "Client" in mlgov.__doc__


def test_exceptions_share_one_base_and_are_the_client_module_ones():
    from mlgov import client

    for name in PUBLIC - {"__version__", "Client", "MlgovError"}:
        cls = getattr(mlgov, name)
        assert issubclass(cls, mlgov.MlgovError) and cls is getattr(client, name)
    assert mlgov.Client is client.Client
