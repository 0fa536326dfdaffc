"""Domain errors. Services raise these; the API maps each to an RFC 9457 problem.

MlgovError
├── InvalidInput        422  a field is wrong (names the field)
├── Unauthenticated     401  no, unknown, expired or revoked credential
├── PermissionDenied    403  the permission table or a governance rule says no
├── NotFound            404
├── Conflict            409  duplicate name, stale state
└── PayloadTooLarge     413
"""

from __future__ import annotations


class MlgovError(Exception):
    status = 500
    title = "Internal error"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class InvalidInput(MlgovError):
    status = 422
    title = "Invalid input"


class Unauthenticated(MlgovError):
    status = 401
    title = "Unauthenticated"


class PermissionDenied(MlgovError):
    status = 403
    title = "Forbidden"


class NotFound(MlgovError):
    status = 404
    title = "Not found"


class Conflict(MlgovError):
    status = 409
    title = "Conflict"


class PayloadTooLarge(MlgovError):
    status = 413
    title = "Payload too large"


def field_path(loc: tuple[object, ...] | list[object]) -> str:
    """A validation error's location as the API names fields: ``("signature", "inputs", 0,
    "name")`` -> ``signature.inputs[0].name``."""
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker of a bad mapping key: the key names it already
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
