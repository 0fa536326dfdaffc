"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import Depends
from fastapi.responses import JSONResponse
from sqlalchemy import text

from mlgov.api.deps import Services, services


def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


def readyz(svc: Services = Depends(services)) -> JSONResponse:
    """The database and the artifact store answer."""
    checks: dict[str, str] = {}
    try:
        with svc.db.read() as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - a probe reports, it does not raise
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        svc.store.check()
        checks["artifact_store"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["artifact_store"] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )
