"""``mlgov login/logout/whoami``, ``mlgov users`` and ``mlgov tokens``: who may do what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from mlgov.cli import config
from mlgov.cli import output as out
from mlgov.cli.config import connect
from mlgov.cli.options import AsJson, Reason
from mlgov.client import Client
from mlgov.identity.permissions import Role

users_app = typer.Typer(
    help="Users and service accounts, their roles; disabling accounts.", no_args_is_help=True
)
tokens_app = typer.Typer(help="API tokens: issue (shown once), list, revoke.", no_args_is_help=True)

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


# --------------------------------------------------------------------------------- login


def login(
    url: Annotated[str, typer.Option(help="The server, e.g. http://127.0.0.1:8000.")],
    token: Annotated[
        str | None,
        typer.Option(help="An API token (prompted, hidden, when neither it nor --user is given)."),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(help="Log in with this user's password (prompted, hidden) instead."),
    ] = None,
) -> None:
    """Check a token (or exchange a password for a 12-hour token) and save it for later
    commands."""
    url = url.rstrip("/")
    parts = urlsplit(url)
    if parts.scheme == "http" and (parts.hostname or "") not in _LOOPBACK:
        out.warn(f"{url} is plain HTTP: credentials cross the network unencrypted")
    if user is not None:
        if token is not None:
            raise typer.BadParameter("give --token or --user, not both", param_hint="--user")
        password = typer.prompt("Password", hide_input=True)
        token = Client.login(url, user, password, reason="CLI login")["token"]
    elif token is None:
        token = typer.prompt("API token", hide_input=True)
    token = token.strip()
    if not token:
        raise typer.BadParameter("the token is empty", param_hint="--token")
    with Client(url, token) as api:
        me = api.me()
    path = config.write_config(url, token)
    roles = ", ".join(me["roles"]) or "no roles"
    out.success(f"Logged in to {url} as {me['name']} ({roles}).")
    out.info(f"Credentials saved in {path} (readable by you only).")


def logout() -> None:
    """Forget the saved credentials (the token itself stays valid until revoked)."""
    path = config.remove_config()
    if path is None:
        out.info(f"Not logged in (no {config.config_path()}).")
    else:
        out.success(f"Logged out: removed {path}.")


def whoami(json_: AsJson = False) -> None:
    """Show the user the saved (or MLGOV_TOKEN) token belongs to."""
    creds = config.credentials()
    with Client(creds.url, creds.token) as api:
        me = api.me()
    if json_:
        out.emit_json(me)
        return
    out.record(
        [
            ("name", me["name"]),
            ("kind", me["kind"]),
            ("roles", me["roles"]),
            ("server", creds.url),
        ]
    )


# --------------------------------------------------------------------------------- users


def _user_fields(u: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("name", u["name"]),
        ("kind", u["kind"]),
        ("display name", u["display_name"]),
        ("email", u["email"]),
        ("roles", u["roles"]),
        ("disabled", u["disabled"]),
        ("created", f"{out.when(u['created_at'])} by {u['created_by']}"),
    ]


@users_app.command("list")
def users_list(json_: AsJson = False) -> None:
    """List users and service accounts with their roles."""
    with connect() as api:
        users = api.list_users()
    if json_:
        out.emit_json_lines(users)
        return
    out.table(
        ["name", "kind", "roles", "disabled", "created by", "created"],
        (
            [
                u["name"],
                u["kind"],
                u["roles"],
                u["disabled"],
                u["created_by"],
                out.when(u["created_at"]),
            ]
            for u in users
        ),
    )


@users_app.command("show")
def users_show(name: str, json_: AsJson = False) -> None:
    """Show a user or service account."""
    with connect() as api:
        user = api.get_user(name)
    if json_:
        out.emit_json(user)
    else:
        out.record(_user_fields(user), title=f"user {name}")


@users_app.command("create")
def users_create(
    name: str,
    reason: Reason,
    role: Annotated[list[Role] | None, typer.Option("--role", help="A role (repeatable).")] = None,
    service_account: Annotated[
        bool, typer.Option(help="A service account (CI, jobs): tokens only, no password.")
    ] = False,
    password_prompt: Annotated[
        bool, typer.Option(help="Ask for a password (hidden, 12+ characters).")
    ] = False,
    display_name: Annotated[str | None, typer.Option(help="Full name.")] = None,
    email: Annotated[str | None, typer.Option(help="E-mail address.")] = None,
    json_: AsJson = False,
) -> None:
    """Create a user or service account with roles."""
    password = None
    if password_prompt:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with connect() as api:
        user = api.create_user(
            name,
            [r.value for r in role or []],
            reason,
            kind="service_account" if service_account else "user",
            password=password,
            display_name=display_name,
            email=email,
        )
    if json_:
        out.emit_json(user)
    else:
        kind = "service account" if user["kind"] == "service_account" else "user"
        roles = ", ".join(user["roles"]) or "no roles"
        out.success(f"Created {kind} {user['name']} ({roles}).")


@users_app.command("grant")
def users_grant(name: str, role: Role, reason: Reason, json_: AsJson = False) -> None:
    """Grant a role."""
    with connect() as api:
        user = api.grant_role(name, role.value, reason)
    if json_:
        out.emit_json(user)
    else:
        out.success(f"Granted {role.value} to {name}; roles: {', '.join(sorted(user['roles']))}.")


@users_app.command("revoke")
def users_revoke(name: str, role: Role, reason: Reason, json_: AsJson = False) -> None:
    """Revoke a role."""
    with connect() as api:
        user = api.revoke_role(name, role.value, reason)
    if json_:
        out.emit_json(user)
    else:
        roles = ", ".join(user["roles"]) or "none"
        out.success(f"Revoked {role.value} from {name}; roles: {roles}.")


@users_app.command("disable")
def users_disable(name: str, reason: Reason, json_: AsJson = False) -> None:
    """Disable an account: its tokens stop working at once."""
    with connect() as api:
        user = api.disable_user(name, reason)
    if json_:
        out.emit_json(user)
    else:
        out.success(f"Disabled {name}.")


@users_app.command("enable")
def users_enable(name: str, reason: Reason, json_: AsJson = False) -> None:
    """Enable a disabled account again."""
    with connect() as api:
        user = api.enable_user(name, reason)
    if json_:
        out.emit_json(user)
    else:
        out.success(f"Enabled {name}.")


# -------------------------------------------------------------------------------- tokens

UserOption = Annotated[
    str | None, typer.Option("--user", help="Whose tokens (default: yours).", show_default=False)
]


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Option("--name", help="A name to recognise the token by.")],
    reason: Reason,
    user: UserOption = None,
    expires_in_days: Annotated[
        int | None, typer.Option(min=1, help="Expire after this many days.")
    ] = None,
    json_: AsJson = False,
) -> None:
    """Issue an API token; its secret is printed once."""
    expires_at = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    with connect() as api:
        owner = user or api.me()["name"]
        issued = api.create_token(owner, name, reason, expires_at=expires_at)
    if json_:
        out.emit_json(issued)
        return
    expiry = f"expires {out.when(issued['expires_at'])}" if issued["expires_at"] else "no expiry"
    out.success(f"Issued token {issued['id']} ({issued['name']}) for {owner}, {expiry}.")
    out.secret_box(
        "API token — shown once, store it now",
        issued["token"],
        hint=f"revoke with: mlgov tokens revoke {issued['id']} --reason ...",
    )


@tokens_app.command("list")
def tokens_list(user: UserOption = None, json_: AsJson = False) -> None:
    """List a user's tokens (never their secrets)."""
    with connect() as api:
        owner = user or api.me()["name"]
        tokens = api.list_tokens(owner)
    if json_:
        out.emit_json_lines(tokens)
        return
    out.table(
        ["id", "name", "created by", "created", "expires", "revoked"],
        (
            [
                t["id"],
                t["name"],
                t["created_by"],
                out.when(t["created_at"]),
                out.when(t["expires_at"]),
                out.when(t["revoked_at"]),
            ]
            for t in tokens
        ),
        title=f"tokens of {owner}",
    )


@tokens_app.command("revoke")
def tokens_revoke(token_id: str, reason: Reason, json_: AsJson = False) -> None:
    """Revoke an API token."""
    with connect() as api:
        token = api.revoke_token(token_id, reason)
    if json_:
        out.emit_json(token)
    else:
        out.success(f"Revoked token {token['id']} ({token['name']}) of {token['user']}.")
