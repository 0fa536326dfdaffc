"""The Python SDK: :class:`Client`, a synchronous client of the mlgov REST API (``/api/v1``).

Every method maps to one endpoint of ``mlgov.api.routes.ROUTES`` and returns the API's JSON as
plain dicts and lists; methods that search or read the audit trail return iterators that follow
``next_cursor`` through every page. Artifacts are streamed both ways, never held in memory, and
downloads are checked against the server's SHA-256::

    from mlgov import Client

    with Client("http://127.0.0.1:8000", token) as api:
        api.create_model("credit", "risk", "high", reason="new scorecard")
        for model in api.search_models(risk_tier="high"):
            print(model["name"], model["latest_version"])
        request = api.request_transition("credit", 3, "staging", reason="validated")
        if request["status"] == "pending":  # the policy's unmet requirements, in words
            print(request["evaluation"]["unmet"])

Errors are the API's RFC 9457 problems, raised as exceptions of this tree::

    MlgovError               any failure; .status .title .detail .field .problem
    ├── InvalidInput         422  a field is wrong (.field names it, e.g. "reason")
    ├── Unauthenticated      401  no, unknown, expired or revoked token
    ├── PermissionDenied     403  the permission table or a governance rule says no
    ├── NotFound             404
    ├── Conflict             409  duplicate name, stale state, immutable record
    ├── PayloadTooLarge      413
    ├── ServerError          5xx
    ├── ConnectionFailed     no answer: refused, timed out, TLS or protocol failure
    └── ChecksumMismatch     a downloaded artifact does not match its SHA-256

Other 4xx answers raise :class:`MlgovError` itself. The token is sent only in the
``Authorization`` header; it is never stored elsewhere on the client, logged or shown by
``repr``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import itertools
import json
import mimetypes
import os
import secrets
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self
from urllib.parse import quote

import httpx

from mlgov import __version__

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
]

Progress = Callable[[int], None]
"""Called with the number of bytes transferred so far."""

API = "/api/v1"
_CHUNK = 1 << 20


# -------------------------------------------------------------------------------- errors


class MlgovError(Exception):
    """Base of every error the client raises.

    ``problem`` is the full RFC 9457 body when the server sent one (``{}`` otherwise);
    ``status`` is the HTTP status (``None`` when there was no answer)."""

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        title: str = "Error",
        field: str | None = None,
        problem: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.field = field
        self.problem: dict[str, Any] = dict(problem or {})

    def __str__(self) -> str:
        head = f"{self.title} ({self.status})" if self.status else self.title
        tail = f" [field: {self.field}]" if self.field else ""
        return f"{head}: {self.detail}{tail}"


class InvalidInput(MlgovError):
    """422: the request is well-formed but a field is wrong; ``field`` names it."""


class Unauthenticated(MlgovError):
    """401: no token, or an unknown, expired or revoked one, or a disabled account."""


class PermissionDenied(MlgovError):
    """403: the caller's roles do not allow this, or a governance rule forbids it."""


class NotFound(MlgovError):
    """404: no such model, version, dataset, user, token or URL."""


class Conflict(MlgovError):
    """409: the name exists already, or the record is in a state that forbids the change."""


class PayloadTooLarge(MlgovError):
    """413: the artifact or request body is over the server's limit."""


class ServerError(MlgovError):
    """5xx: the server failed; ``problem['request_id']`` helps find it in the server log."""


class ConnectionFailed(MlgovError):
    """The server could not be reached or the connection broke (no HTTP answer)."""


class ChecksumMismatch(MlgovError):
    """A downloaded artifact's SHA-256 differs from the one the server announced."""


_BY_STATUS: dict[int, type[MlgovError]] = {
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidInput,
}


def _error_from(response: httpx.Response) -> MlgovError:
    """The exception for an error answer, from its problem document when there is one."""
    status = response.status_code
    problem: dict[str, Any] = {}
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        problem = body
    title = str(problem.get("title") or response.reason_phrase or "Error")
    detail = problem.get("detail")
    if not isinstance(detail, str) or not detail:
        text = response.text.strip()
        detail = text[:500] if text and not problem else f"HTTP {status} {response.reason_phrase}"
    field = problem.get("field")
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else MlgovError)
    return cls(
        detail,
        status=status,
        title=title,
        field=field if isinstance(field, str) else None,
        problem=problem,
    )


# ------------------------------------------------------------------------------- helpers


class _ProgressReader:
    """A binary file wrapper that reports how many bytes have been read from it.

    httpx's multipart encoder reads the file in chunks as it sends them, so bytes read are
    (to within one chunk) bytes sent. ``fileno`` lets httpx size the body without reading it."""

    def __init__(self, file: IO[bytes], progress: Progress | None) -> None:
        self._file = file
        self._progress = progress
        self._sent = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        if chunk and self._progress is not None:
            self._sent += len(chunk)
            self._progress(self._sent)
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self._file.seek(offset, whence)
        self._sent = position
        return position

    def tell(self) -> int:
        return self._file.tell()

    def fileno(self) -> int:
        return self._file.fileno()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _params(**values: Any) -> dict[str, Any]:
    return {k: _jsonable(v) for k, v in values.items() if v is not None}


def _seg(value: str | int) -> str:
    """One URL path segment, percent-encoded (a name can never reach another path)."""
    return quote(str(value), safe="")


def _unreachable(url: str, exc: httpx.TransportError) -> ConnectionFailed:
    return ConnectionFailed(
        f"cannot reach {url}: {str(exc) or type(exc).__name__}", title="Connection failed"
    )


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default verifying TLS context, built once: loading the CA bundle costs ~50 ms
    and a context is safe to share between clients and threads."""
    return httpx.create_ssl_context()


def _server_filename(response: httpx.Response) -> str:
    disposition = response.headers.get("content-disposition", "")
    _, _, rest = disposition.partition('filename="')
    name = rest.split('"', 1)[0].replace("\\", "/").rsplit("/", 1)[-1]
    return name if name not in {"", ".", ".."} else "artifact"


# -------------------------------------------------------------------------------- client


class Client:
    """A connection to one mlgov server, authenticated by an API token.

    ``transport`` is an optional ``httpx.BaseTransport`` (a seam for tests, proxies or custom
    TLS settings). A blank or malformed token raises ``ValueError`` at once. Use the client as
    a context manager, or call :meth:`close`, to release its connections."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        # Checked here so that no error message (httpx quotes bad header values) echoes it.
        if not token or token != token.strip() or not (token.isascii() and token.isprintable()):
            raise ValueError("the token must be non-empty printable ASCII, without padding")
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": f"mlgov-python/{__version__}",
                "Accept": "application/json, application/problem+json",
            },
            timeout=timeout,
            transport=transport,
            verify=_tls_context(),
        )

    def __repr__(self) -> str:
        return f"<Client url={self.url!r}>"

    @staticmethod
    def login(
        url: str,
        user: str,
        password: str,
        *,
        reason: str = "password login",
        token_name: str = "login",
        expires_at: datetime | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> dict[str, Any]:
        """Exchange a password for an expiring API token (12 hours unless ``expires_at`` says
        otherwise, at most 30 days). Returns the token record with its one-time ``token``:
        ``Client(url, issued["token"])``."""
        base = url.rstrip("/")
        body = _jsonable(
            {
                "user": user,
                "password": password,
                "token_name": token_name,
                "reason": reason,
                **({"expires_at": expires_at} if expires_at else {}),
            }
        )
        with httpx.Client(
            base_url=base,
            timeout=timeout,
            transport=transport,
            verify=_tls_context(),
            headers={"User-Agent": f"mlgov-python/{__version__}"},
        ) as http:
            try:
                response = http.post(f"{API}/login", json=body)
            except httpx.TransportError as exc:
                raise _unreachable(base, exc) from exc
        if response.is_error:
            raise _error_from(response)
        return response.json()  # type: ignore[no-any-return]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- transport ---------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._connection_failed(exc) from exc
        if response.is_error:
            raise _error_from(response)
        return response

    @contextlib.contextmanager
    def _stream(self, path: str, params: Any = None) -> Iterator[httpx.Response]:
        """A streamed GET whose errors are raised like :meth:`_send`'s."""
        try:
            with self._http.stream("GET", path, params=params) as response:
                if response.is_error:
                    response.read()
                    raise _error_from(response)
                yield response
        except httpx.TransportError as exc:
            raise self._connection_failed(exc) from exc

    def _connection_failed(self, exc: httpx.TransportError) -> ConnectionFailed:
        return _unreachable(self.url, exc)

    def _get(self, path: str, **params: Any) -> Any:
        return self._send("GET", path, params=_params(**params)).json()

    def _change(self, method: str, path: str, body: Mapping[str, Any]) -> Any:
        return self._send(method, path, json=_jsonable(body)).json()

    def _pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            page = self._get(path, **params, cursor=cursor)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # -- identity ----------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        """The user (or service account) this client's token belongs to, with its roles."""
        return self._get(f"{API}/me")  # type: ignore[no-any-return]

    def create_user(
        self,
        name: str,
        roles: list[str],
        reason: str,
        kind: str = "user",
        password: str | None = None,
        *,
        display_name: str | None = None,
        email: str | None = None,
    ) -> dict[str, Any]:
        """Create a user (``kind="user"``) or a service account (``"service_account"``)."""
        body: dict[str, Any] = {"name": name, "roles": list(roles), "kind": kind, "reason": reason}
        body.update(_params(password=password, display_name=display_name, email=email))
        return self._change("POST", f"{API}/users", body)  # type: ignore[no-any-return]

    def list_users(self) -> list[dict[str, Any]]:
        return self._get(f"{API}/users")  # type: ignore[no-any-return]

    def get_user(self, name: str) -> dict[str, Any]:
        return self._get(f"{API}/users/{_seg(name)}")  # type: ignore[no-any-return]

    def update_user(self, name: str, reason: str, **fields: Any) -> dict[str, Any]:
        """Change ``disabled``, ``display_name``, ``email`` or ``password``."""
        body = {**fields, "reason": reason}
        return self._change("PATCH", f"{API}/users/{_seg(name)}", body)  # type: ignore[no-any-return]

    def disable_user(self, name: str, reason: str) -> dict[str, Any]:
        """Disable an account: its tokens stop working at once (it stays in the audit trail)."""
        return self.update_user(name, reason, disabled=True)

    def enable_user(self, name: str, reason: str) -> dict[str, Any]:
        return self.update_user(name, reason, disabled=False)

    def grant_role(self, name: str, role: str, reason: str) -> dict[str, Any]:
        body = {"role": role, "reason": reason}
        return self._change("POST", f"{API}/users/{_seg(name)}/roles", body)  # type: ignore[no-any-return]

    def revoke_role(self, name: str, role: str, reason: str) -> dict[str, Any]:
        path = f"{API}/users/{_seg(name)}/roles/{_seg(role)}"
        return self._change("DELETE", path, {"reason": reason})  # type: ignore[no-any-return]

    def create_token(
        self, user: str, name: str, reason: str, expires_at: datetime | str | None = None
    ) -> dict[str, Any]:
        """Issue an API token for ``user``. The answer's ``token`` is the secret, shown once.

        ``expires_at`` must carry a time zone."""
        body = {"user": user, "name": name, "reason": reason, **_params(expires_at=expires_at)}
        return self._change("POST", f"{API}/tokens", body)  # type: ignore[no-any-return]

    def list_tokens(self, user: str) -> list[dict[str, Any]]:
        """A user's tokens (never their secrets), revoked and expired ones included."""
        return self._get(f"{API}/users/{_seg(user)}/tokens")  # type: ignore[no-any-return]

    def revoke_token(self, token_id: str, reason: str) -> dict[str, Any]:
        path = f"{API}/tokens/{_seg(token_id)}"
        return self._change("DELETE", path, {"reason": reason})  # type: ignore[no-any-return]

    # -- models ------------------------------------------------------------------------

    def create_model(
        self, name: str, owner_team: str, risk_tier: str, reason: str, **fields: Any
    ) -> dict[str, Any]:
        """Register a model. ``fields``: ``description``, ``domain``, ``intended_use``,
        ``out_of_scope_uses`` (list) and ``tags`` (list)."""
        body = {"name": name, "owner_team": owner_team, "risk_tier": risk_tier, **fields}
        body["reason"] = reason
        return self._change("POST", f"{API}/models", body)  # type: ignore[no-any-return]

    def get_model(self, name: str) -> dict[str, Any]:
        """A model with its ``latest_version`` (or ``None``)."""
        return self._get(f"{API}/models/{_seg(name)}")  # type: ignore[no-any-return]

    def update_model(self, name: str, reason: str, **fields: Any) -> dict[str, Any]:
        """Change a model's descriptive fields (those of :meth:`create_model`, and
        ``owner_team`` and ``risk_tier``); fields not given are left as they are."""
        body = {**fields, "reason": reason}
        return self._change("PATCH", f"{API}/models/{_seg(name)}", body)  # type: ignore[no-any-return]

    def search_models_page(
        self,
        q: str | None = None,
        owner_team: str | None = None,
        risk_tier: str | None = None,
        stage: str | None = None,
        tag: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of the catalog: ``{"items": [...], "next_cursor": str | None}``.

        Models are ordered by name; ``stage`` matches a model whose latest version is in it."""
        return self._get(  # type: ignore[no-any-return]
            f"{API}/models",
            q=q,
            owner_team=owner_team,
            risk_tier=risk_tier,
            stage=stage,
            tag=tag,
            limit=limit,
            cursor=cursor,
        )

    def search_models(
        self,
        q: str | None = None,
        owner_team: str | None = None,
        risk_tier: str | None = None,
        stage: str | None = None,
        tag: str | None = None,
        limit: int = 50,
    ) -> Iterator[dict[str, Any]]:
        """Every matching model, fetching ``limit`` per request (1-200) as the iterator is
        consumed. To take only the first n, use ``itertools.islice``."""
        return self._pages(
            f"{API}/models",
            q=q,
            owner_team=owner_team,
            risk_tier=risk_tier,
            stage=stage,
            tag=tag,
            limit=limit,
        )

    # -- model versions ----------------------------------------------------------------

    def create_version(
        self,
        model: str,
        artifact_path: str | os.PathLike[str],
        *,
        format: str,
        signature: Mapping[str, Any],
        reason: str,
        progress: Progress | None = None,
        **metadata: Any,
    ) -> dict[str, Any]:
        """Register a new version of ``model``, streaming the artifact file from disk.

        ``metadata`` takes the other fields of the upload: ``algorithm``, ``hyperparameters``,
        ``metrics``, ``code_ref`` (``{"repository", "commit"}``), ``environment``
        (``{"python", "packages"}``), ``changelog`` and ``datasets``
        (``[{"dataset", "version", "role"}]``). ``progress`` is called with the bytes sent."""
        path = Path(artifact_path)
        meta = _jsonable({"format": format, "signature": signature, **metadata, "reason": reason})
        with path.open("rb") as file:
            files = {
                "artifact": (
                    path.name,
                    _ProgressReader(file, progress),
                    "application/octet-stream",
                ),
                "metadata": (None, json.dumps(meta), "application/json"),
            }
            response = self._send("POST", f"{API}/models/{_seg(model)}/versions", files=files)
        return response.json()  # type: ignore[no-any-return]

    def get_version(self, model: str, version: int) -> dict[str, Any]:
        return self._get(f"{API}/models/{_seg(model)}/versions/{_seg(version)}")  # type: ignore[no-any-return]

    def list_versions(self, model: str, limit: int = 50) -> list[dict[str, Any]]:
        """Every version of ``model``, newest first (``limit`` is the page size)."""
        return list(self._pages(f"{API}/models/{_seg(model)}/versions", limit=limit))

    def download_artifact(
        self,
        model: str,
        version: int,
        dest_path: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Stream a version's artifact to ``dest_path`` (a file, or an existing directory to
        keep the registered file name) and check its SHA-256 against ``X-Artifact-SHA256``.

        The bytes go to a temporary file next to the destination, renamed into place only once
        verified: on a mismatch (:class:`ChecksumMismatch`) or any failure nothing is left
        behind and an existing file at ``dest_path`` is untouched. Returns ``{"path",
        "sha256", "size"}``. ``progress`` is called with the bytes received."""
        dest = Path(dest_path)
        url = f"{API}/models/{_seg(model)}/versions/{_seg(version)}/artifact"
        with self._stream(url) as response:
            expected = response.headers.get("x-artifact-sha256", "").lower()
            if not expected:
                raise ChecksumMismatch(
                    "the server sent no X-Artifact-SHA256 header to verify the artifact",
                    title="Checksum missing",
                )
            if dest.is_dir():
                dest = dest / _server_filename(response)
            digest = hashlib.sha256()
            size = 0
            with _replacing(dest) as out:
                for chunk in response.iter_bytes(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    if progress is not None:
                        progress(size)
                actual = digest.hexdigest()
                if actual != expected:
                    raise ChecksumMismatch(
                        f"the downloaded artifact's sha256 is {actual}, the server announced "
                        f"{expected}; the file was discarded",
                        title="Checksum mismatch",
                    )
        return {"path": str(dest), "sha256": actual, "size": size}

    # -- datasets ----------------------------------------------------------------------

    def create_dataset(
        self, name: str, owner_team: str, reason: str, **fields: Any
    ) -> dict[str, Any]:
        """Register a dataset (``fields``: ``description``)."""
        body = {"name": name, "owner_team": owner_team, **fields, "reason": reason}
        return self._change("POST", f"{API}/datasets", body)  # type: ignore[no-any-return]

    def get_dataset(self, name: str) -> dict[str, Any]:
        return self._get(f"{API}/datasets/{_seg(name)}")  # type: ignore[no-any-return]

    def search_datasets_page(
        self,
        q: str | None = None,
        owner_team: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of datasets: ``{"items": [...], "next_cursor": str | None}``."""
        return self._get(  # type: ignore[no-any-return]
            f"{API}/datasets", q=q, owner_team=owner_team, limit=limit, cursor=cursor
        )

    def search_datasets(
        self, q: str | None = None, owner_team: str | None = None, limit: int = 50
    ) -> Iterator[dict[str, Any]]:
        """Every matching dataset, ``limit`` per request, following the cursor."""
        return self._pages(f"{API}/datasets", q=q, owner_team=owner_team, limit=limit)

    def create_dataset_version(
        self,
        name: str,
        *,
        content_sha256: str,
        uri: str,
        schema: list[Mapping[str, Any]],
        row_count: int,
        datasheet: Mapping[str, Any] | None = None,
        reason: str,
    ) -> dict[str, Any]:
        """Register a version of dataset ``name``: its content hash, location, column schema
        (``[{"name", "type", "description"}]``), row count and datasheet answers."""
        body: dict[str, Any] = {
            "content_sha256": content_sha256,
            "uri": uri,
            "schema": list(schema),
            "row_count": row_count,
            "reason": reason,
        }
        if datasheet is not None:
            body["datasheet"] = datasheet
        return self._change("POST", f"{API}/datasets/{_seg(name)}/versions", body)  # type: ignore[no-any-return]

    def get_dataset_version(self, name: str, version: int) -> dict[str, Any]:
        """A dataset version and, in ``used_by``, the model versions built on it."""
        return self._get(f"{API}/datasets/{_seg(name)}/versions/{_seg(version)}")  # type: ignore[no-any-return]

    def list_dataset_versions(self, name: str) -> list[dict[str, Any]]:
        return self._get(f"{API}/datasets/{_seg(name)}/versions")  # type: ignore[no-any-return]

    # -- lifecycle: transitions ----------------------------------------------------------

    def request_transition(
        self, model: str, version: int, to_stage: str, reason: str
    ) -> dict[str, Any]:
        """Ask to move a version to ``to_stage`` (``development``, ``staging``, ``production``
        or ``archived``). The model's risk-tier policy is evaluated at once: ``status`` is
        ``applied`` when every requirement is met, else ``pending``, with the requirements
        in ``evaluation["requirements"]`` and what is missing, in words, in
        ``evaluation["unmet"]``. An archived version that was in production before goes back
        there by rollback (``rollback`` true; see :meth:`rollback`)."""
        body = {"model": model, "version": version, "to_stage": to_stage, "reason": reason}
        return self._change("POST", f"{API}/transitions", body)  # type: ignore[no-any-return]

    def rollback(self, model: str, reason: str) -> dict[str, Any]:
        """Request that the version in production before the current one returns there: the
        newest version that entered production and is archived now (read from
        :meth:`stage_history`). Raises :class:`NotFound` when there is none."""
        version = _rollback_target(self.stage_history(model))
        if version is None:
            raise NotFound(
                f"model {model!r} has no archived version that was in production: there is "
                "nothing to roll back to",
                title="Nothing to roll back",
            )
        return self.request_transition(model, version, "production", reason)

    def get_transition(self, transition_id: int) -> dict[str, Any]:
        """A transition request with its current evaluation, the one made when it was
        requested (``evaluation_at_request``) and its ``decisions``."""
        return self._get(f"{API}/transitions/{_seg(transition_id)}")  # type: ignore[no-any-return]

    def transitions_page(
        self,
        status: str | None = None,
        model: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of transition requests, newest first: ``{"items", "next_cursor"}``.
        ``status``: ``pending`` (the approvals inbox), ``applied``, ``rejected`` or
        ``cancelled``."""
        return self._get(  # type: ignore[no-any-return]
            f"{API}/transitions", status=status, model=model, limit=limit, cursor=cursor
        )

    def list_transitions(
        self, status: str | None = None, model: str | None = None, limit: int = 50
    ) -> Iterator[dict[str, Any]]:
        """Every matching transition request, newest first, ``limit`` (1-200) per request."""
        return self._pages(f"{API}/transitions", status=status, model=model, limit=limit)

    def approve(self, transition_id: int, comment: str) -> dict[str, Any]:
        """Approve a pending request; the request is applied at once if that was the last
        requirement. Separation of duties refuses (:class:`PermissionDenied`) the requester
        and the version's creator."""
        return self._decide(transition_id, "approve", comment)

    def reject(self, transition_id: int, comment: str) -> dict[str, Any]:
        """Reject a pending request, which closes it (``status`` ``rejected``)."""
        return self._decide(transition_id, "reject", comment)

    def _decide(self, transition_id: int, decision: str, comment: str) -> dict[str, Any]:
        path = f"{API}/transitions/{_seg(transition_id)}/decisions"
        body = {"decision": decision, "comment": comment}
        return self._change("POST", path, body)  # type: ignore[no-any-return]

    def cancel_transition(self, transition_id: int, reason: str) -> dict[str, Any]:
        """Cancel one's own pending request."""
        path = f"{API}/transitions/{_seg(transition_id)}/cancel"
        return self._change("POST", path, {"reason": reason})  # type: ignore[no-any-return]

    # -- lifecycle: policies -------------------------------------------------------------

    def list_policies(self) -> list[dict[str, Any]]:
        """The current policy of each risk tier (``document`` is its YAML, ``rules`` the
        parsed rules, ``versions`` every version number)."""
        return self._get(f"{API}/policies")  # type: ignore[no-any-return]

    def get_policy(self, tier: str, version: int | None = None) -> dict[str, Any]:
        """A risk tier's current policy, or its version ``version``."""
        return self._get(f"{API}/policies/{_seg(tier)}", version=version)  # type: ignore[no-any-return]

    def publish_policy(self, tier: str, document: str, reason: str) -> dict[str, Any]:
        """Publish ``document`` (YAML) as the next version of a risk tier's policy; pending
        requests of the tier's models are evaluated again against it."""
        path = f"{API}/policies/{_seg(tier)}/versions"
        return self._change("POST", path, {"document": document, "reason": reason})  # type: ignore[no-any-return]

    # -- lifecycle: evidence -------------------------------------------------------------

    def add_evidence(
        self,
        model: str,
        version: int,
        kind: str,
        passed: bool,
        reason: str,
        *,
        results: Mapping[str, Any] | None = None,
        checks: Sequence[Mapping[str, Any]] | None = None,
        summary: str = "",
        suite: str | Mapping[str, Any] | None = None,
        dataset: str | tuple[str, int] | None = None,
        attachments: Sequence[str | os.PathLike[str]] = (),
    ) -> dict[str, Any]:
        """Record evidence (immutable, hashed) on a version: ``kind`` (``performance``,
        ``fairness``, ``robustness``, ``security_scan``, … or a custom kind), whether it
        ``passed``, the ``results`` and ``checks`` (``[{"name", "passed", "value",
        "threshold", "details"}]``) behind it.

        ``suite`` is ``"name"``, ``"name@version"`` or ``{"name", "version", "definition"}``;
        ``dataset`` the dataset version it was measured on, ``"name@version"`` or
        ``(name, version)`` (anything else raises ``ValueError``); ``attachments`` are files,
        uploaded with their names. Pending requests of the version are evaluated again, and
        applied if now met."""
        body: dict[str, Any] = {
            "kind": kind,
            "passed": passed,
            "summary": summary,
            "results": dict(results or {}),
            "checks": [dict(c) for c in checks or []],
            "reason": reason,
        }
        if suite is not None:
            body["suite"] = _suite_ref(suite)
        if dataset is not None:
            body["dataset"] = _dataset_ref(dataset)
        if attachments:
            body["attachments"] = [_attachment(Path(p)) for p in attachments]
        path = f"{API}/models/{_seg(model)}/versions/{_seg(version)}/evidence"
        return self._change("POST", path, body)  # type: ignore[no-any-return]

    def list_evidence(
        self, model: str, version: int, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """A version's evidence records, oldest first (only ``kind`` when given)."""
        path = f"{API}/models/{_seg(model)}/versions/{_seg(version)}/evidence"
        return self._get(path, kind=kind)  # type: ignore[no-any-return]

    def download_evidence_attachment(
        self,
        model: str,
        version: int,
        evidence_id: int,
        filename: str,
        dest: str | os.PathLike[str],
    ) -> dict[str, Any]:
        """Save an evidence attachment to ``dest`` (a file, or an existing directory to keep
        its name), checked against the server's SHA-256 like :meth:`download_artifact`.
        Returns ``{"path", "sha256", "size"}``."""
        target = Path(dest)
        if target.is_dir():
            target = target / filename
        url = (
            f"{API}/models/{_seg(model)}/versions/{_seg(version)}/evidence/"
            f"{_seg(evidence_id)}/attachments/{_seg(filename)}"
        )
        return self._save_checked(url, target, "attachment")

    def _save_checked(self, url: str, target: Path, what: str) -> dict[str, Any]:
        """Stream ``url`` to ``target`` and check it against the ``X-Content-SHA256`` the server
        announced; nothing is left behind on a mismatch."""
        with self._stream(url) as response:
            expected = response.headers.get("x-content-sha256", "").lower()
            digest = hashlib.sha256()
            size = 0
            with _replacing(target) as out:
                for chunk in response.iter_bytes(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                actual = digest.hexdigest()
                if actual != expected:
                    raise ChecksumMismatch(
                        f"the downloaded {what}'s sha256 is {actual}, the server announced "
                        f"{expected or 'none'}; the file was discarded",
                        title="Checksum mismatch",
                    )
        return {"path": str(target), "sha256": actual, "size": size}

    # -- validation ----------------------------------------------------------------------

    def publish_suite(self, name: str, document: str, reason: str) -> dict[str, Any]:
        """Publish ``document`` (YAML, see docs/validation.md) as the next version of a
        validation suite."""
        path = f"{API}/suites/{_seg(name)}/versions"
        return self._change("POST", path, {"document": document, "reason": reason})  # type: ignore[no-any-return]

    def list_suites(self) -> list[dict[str, Any]]:
        return self._get(f"{API}/suites")  # type: ignore[no-any-return]

    def get_suite(self, name: str, version: int | None = None) -> dict[str, Any]:
        return self._get(f"{API}/suites/{_seg(name)}", version=version)  # type: ignore[no-any-return]

    def validate(
        self,
        model: str,
        version: int,
        suite: str,
        dataset: str | tuple[str, int],
        reason: str,
        *,
        suite_version: int | None = None,
    ) -> dict[str, Any]:
        """Queue a validation run of ``suite`` on ``dataset`` (``"name@version"`` or a pair);
        a worker runs it. Returns the job (``status`` ``queued``); see
        :meth:`wait_for_validation`."""
        body: dict[str, Any] = {
            "suite": suite,
            "dataset": _dataset_ref(dataset),
            "reason": reason,
        }
        if suite_version is not None:
            body["suite_version"] = suite_version
        path = f"{API}/models/{_seg(model)}/versions/{_seg(version)}/validations"
        return self._change("POST", path, body)  # type: ignore[no-any-return]

    def get_validation(self, job_id: int) -> dict[str, Any]:
        return self._get(f"{API}/validations/{_seg(job_id)}")  # type: ignore[no-any-return]

    def list_validations(
        self,
        *,
        status: str | None = None,
        model: str | None = None,
        version: int | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        pages = self._pages(
            f"{API}/validations", status=status, model=model, version=version, limit=limit
        )
        return list(itertools.islice(pages, limit))

    def wait_for_validation(
        self,
        job_id: int,
        *,
        timeout: float | None = None,
        poll: float = 0.5,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll a validation job until it succeeded or failed (``progress`` is called with each
        state seen). Raises :class:`TimeoutError` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get_validation(job_id)
            if progress is not None:
                progress(job)
            if job["status"] in ("succeeded", "failed"):
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"validation job #{job_id} is still {job['status']} after {timeout:g} s"
                )
            time.sleep(poll)

    def download_validation_report(
        self, job_id: int, dest: str | os.PathLike[str]
    ) -> dict[str, Any]:
        """Save a validation run's HTML report to ``dest`` (a file, or an existing directory),
        checked against the server's SHA-256."""
        target = Path(dest)
        if target.is_dir():
            target = target / f"validation-{job_id}.html"
        return self._save_checked(f"{API}/validations/{_seg(job_id)}/report", target, "report")

    def upload_dataset_data(
        self,
        dataset: str,
        version: int,
        path: str | os.PathLike[str],
        reason: str,
        *,
        format: str | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Upload the data file of a dataset version (CSV or Parquet, from the file name unless
        ``format`` says); its sha256 must be the one the version was registered with."""
        file_path = Path(path)
        if format is None:
            format = "parquet" if file_path.suffix.lower() in (".parquet", ".pq") else "csv"
        url = f"{API}/datasets/{_seg(dataset)}/versions/{_seg(version)}/data"
        with file_path.open("rb") as file:
            reader = _ProgressReader(file, progress)
            response = self._send(
                "PUT",
                url,
                params={"format": format, "reason": reason},
                content=iter(functools.partial(reader.read, _CHUNK), b""),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(file_path.stat().st_size),
                },
            )
        return response.json()  # type: ignore[no-any-return]

    # -- lifecycle: history --------------------------------------------------------------

    def stage_history(self, model: str, at: datetime | str | None = None) -> dict[str, Any]:
        """Which version was in which stage at the instant ``at`` (now when not given; UTC
        when it has no zone) and every stage change up to then: ``{"model", "at",
        "production", "stages": [{"version", "stage", "since"}], "changes": [{"version",
        "from_stage", "to_stage", "time", "actor", "transition_id", "reason"}]}``."""
        return self._get(f"{API}/models/{_seg(model)}/stage-history", at=at)  # type: ignore[no-any-return]

    # -- webhooks ------------------------------------------------------------------------

    def create_webhook(
        self,
        name: str,
        url: str,
        events: Sequence[str],
        reason: str,
        description: str = "",
    ) -> dict[str, Any]:
        """Subscribe ``url`` to governance ``events`` (``transition.requested``,
        ``transition.applied``, ``evidence.added``, …). The answer's ``secret`` signs the
        deliveries (``X-Mlgov-Signature``); it is shown this once."""
        body = {
            "name": name,
            "url": url,
            "events": list(events),
            "description": description,
            "reason": reason,
        }
        return self._change("POST", f"{API}/webhooks", body)  # type: ignore[no-any-return]

    def list_webhooks(self) -> list[dict[str, Any]]:
        """Every webhook, removed ones included (``active`` false); never their secrets."""
        return self._get(f"{API}/webhooks")  # type: ignore[no-any-return]

    def get_webhook(self, name: str) -> dict[str, Any]:
        return self._get(f"{API}/webhooks/{_seg(name)}")  # type: ignore[no-any-return]

    def delete_webhook(self, name: str, reason: str) -> dict[str, Any]:
        """Remove a subscription: nothing more is delivered to it (its pending deliveries
        fail); it and its delivery history stay readable."""
        return self._change("DELETE", f"{API}/webhooks/{_seg(name)}", {"reason": reason})  # type: ignore[no-any-return]

    def webhook_deliveries(
        self, name: str, status: str | None = None, limit: int = 50
    ) -> Iterator[dict[str, Any]]:
        """A webhook's deliveries, newest first, each with its ``attempt_log``; ``status``:
        ``pending``, ``delivered`` or ``failed``. ``limit`` (1-200) per request."""
        return self._pages(f"{API}/webhooks/{_seg(name)}/deliveries", status=status, limit=limit)

    # -- audit -------------------------------------------------------------------------

    def audit_events_page(
        self,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of the audit trail: ``{"items": [...], "next_cursor": str | None}``."""
        return self._get(  # type: ignore[no-any-return]
            f"{API}/audit/events",
            actor=actor,
            action=action,
            target=target,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )

    def audit_events(
        self,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int = 100,
    ) -> Iterator[dict[str, Any]]:
        """Every matching audit event in sequence order, ``limit`` (1-1000) per request.

        ``target`` matches that target and everything below it (``model/credit`` includes
        ``model/credit/versions/1``); ``since``/``until`` need a time zone."""
        return self._pages(
            f"{API}/audit/events",
            actor=actor,
            action=action,
            target=target,
            since=since,
            until=until,
            limit=limit,
        )

    # -- the verifiable audit log --------------------------------------------------------

    def audit_public_key(self) -> dict[str, Any]:
        """``{"verifier_key", "key_name", "origin", "algorithm"}``. Trust a key you got out of
        band, not this answer: use it to check that they match."""
        return self._get(f"{API}/audit/public-key")  # type: ignore[no-any-return]

    def audit_checkpoint(self) -> dict[str, Any]:
        """The latest signed checkpoint: ``{"tree_size", "root_hash", "time", "key_name",
        "note"}``."""
        return self._get(f"{API}/audit/checkpoint")  # type: ignore[no-any-return]

    def audit_checkpoints(
        self, after_size: int | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        page = self._get(f"{API}/audit/checkpoints", after_size=after_size, limit=limit)
        return page["items"]  # type: ignore[no-any-return]

    def create_audit_checkpoint(self) -> dict[str, Any]:
        """Have the server sign a checkpoint of the log as it is now (or get the latest one if
        nothing was logged since)."""
        return self._send("POST", f"{API}/audit/checkpoints").json()  # type: ignore[no-any-return]

    def audit_inclusion_proof(self, index: int, tree_size: int | None = None) -> dict[str, Any]:
        return self._get(  # type: ignore[no-any-return]
            f"{API}/audit/proofs/inclusion", index=index, tree_size=tree_size
        )

    def audit_consistency_proof(self, first: int, second: int | None = None) -> dict[str, Any]:
        return self._get(  # type: ignore[no-any-return]
            f"{API}/audit/proofs/consistency", first=first, second=second
        )

    @contextlib.contextmanager
    def audit_export_lines(self, tree_size: int | None = None) -> Iterator[Iterator[bytes]]:
        """Stream the audit export, line by line (``with client.audit_export_lines() as
        lines: …``); feed it to :func:`mlgov.audit.verify.verify_export`."""
        with self._stream(f"{API}/audit/export", _params(tree_size=tree_size)) as response:
            yield (line.encode() for line in response.iter_lines())

    def export_audit(self, dest_path: str | os.PathLike[str], tree_size: int | None = None) -> int:
        """Write the audit export to ``dest_path`` (atomically: a partial file never replaces
        it). Returns the number of lines."""
        count = 0
        with self.audit_export_lines(tree_size) as lines, _replacing(Path(dest_path)) as out:
            for line in lines:
                out.write(line + b"\n")
                count += 1
        return count

    def verify_audit_entry(self, index: int, public_keys: list[str]) -> dict[str, Any]:
        """Prove locally that entry ``index`` is in the log the server signed: fetch the latest
        checkpoint (a new one if it does not cover the entry yet), check its signature with
        ``public_keys`` (C2SP verifier keys), fetch the inclusion proof for its size and check
        it. Returns ``{"entry", "leaf_hash", "checkpoint"}``; raises
        :class:`mlgov.audit.verify.VerificationFailed`."""
        from mlgov.audit.proofs import check_inclusion

        try:
            checkpoint = self.audit_checkpoint()
        except NotFound:  # none signed yet
            checkpoint = self.create_audit_checkpoint()
        if checkpoint["tree_size"] <= index:
            checkpoint = self.create_audit_checkpoint()
        proof = self.audit_inclusion_proof(index, checkpoint["tree_size"])
        return check_inclusion(proof, checkpoint["note"], public_keys)

    def verify_audit_consistency(self, old_note: str, public_keys: list[str]) -> dict[str, Any]:
        """Prove locally that the server's latest checkpoint extends ``old_note`` (a
        checkpoint you kept): nothing logged before it was changed or dropped since."""
        from mlgov.audit.proofs import check_consistency, signed_size

        old = signed_size(old_note, public_keys)  # its signature first: fail before fetching
        latest = self.audit_checkpoint()
        proof = self.audit_consistency_proof(old, latest["tree_size"]) if old else None
        return check_consistency(old_note, latest["note"], proof, public_keys)


def _rollback_target(history: Mapping[str, Any]) -> int | None:
    """The newest version that entered production and is archived now, from a
    :meth:`Client.stage_history` answer (its ``changes`` are oldest first)."""
    now = {s["version"]: s["stage"] for s in history["stages"]}
    for change in reversed(history["changes"]):
        if change["to_stage"] == "production" and now.get(change["version"]) == "archived":
            return int(change["version"])
    return None


def _suite_ref(suite: str | Mapping[str, Any]) -> dict[str, Any]:
    """``"name"``, ``"name@version"`` or a mapping, as the API's ``suite`` object."""
    if isinstance(suite, str):
        name, _, version = suite.partition("@")
        return {"name": name, "version": version}
    return dict(suite)


def _dataset_ref(dataset: str | tuple[str, int]) -> dict[str, Any]:
    """``"name@version"`` or ``(name, version)`` as the API's ``dataset`` object."""
    if isinstance(dataset, str):
        name, at, version = dataset.rpartition("@")
        if not at or not name or not version.isdigit():
            raise ValueError(f"dataset {dataset!r} is not NAME@VERSION, e.g. loans@3")
        return {"dataset": name, "version": int(version)}
    name, number = dataset
    return {"dataset": name, "version": int(number)}


def _attachment(path: Path) -> dict[str, str]:
    """A file as an evidence attachment: its name, media type (guessed from the name) and
    base64 content."""
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return {
        "name": path.name,
        "media_type": media_type,
        "content_base64": base64.b64encode(path.read_bytes()).decode("ascii"),
    }


@contextlib.contextmanager
def _replacing(dest: Path) -> Iterator[IO[bytes]]:
    """A new file beside ``dest``, synced and renamed over it when the block succeeds; on any
    failure removed, and ``dest`` untouched."""
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.part")
    # O_EXCL: never follow or reuse another file; 0o666 less the umask, like any new file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
