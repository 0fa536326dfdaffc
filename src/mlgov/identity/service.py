"""Users, service accounts, role grants and API tokens.

Tokens are 256-bit random secrets shown once; only their SHA-256 is stored (a fast hash is
right for high-entropy secrets and lets a lookup use an index). Passwords are hashed with
argon2id.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from mlgov.audit.events import Action
from mlgov.audit.service import authorize
from mlgov.audit.trail import AuditTrail
from mlgov.context import Actor, Context
from mlgov.db import utcnow
from mlgov.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from mlgov.identity.models import ApiToken, RoleGrant, User
from mlgov.identity.permissions import Permission, Role
from mlgov.names import check_name

TOKEN_PREFIX = "mlgov_"
USER_KINDS = ("user", "service_account")
LOGIN_TOKEN_LIFETIME = timedelta(hours=12)
LOGIN_TOKEN_MAX_LIFETIME = timedelta(days=30)
_hasher = PasswordHasher()


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def check_roles(roles: Sequence[str], field: str = "roles") -> list[str]:
    known = {r.value for r in Role}
    for role in roles:
        if role not in known:
            raise InvalidInput(
                f"unknown role {role!r}; roles are: {', '.join(sorted(known))}", field=field
            )
    return sorted(set(roles))


def actor_of(user: User) -> Actor:
    return Actor(name=user.name, kind=user.kind, roles=frozenset(user.roles), user_id=user.id)


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str


class IdentityService:
    def __init__(self, trail: AuditTrail) -> None:
        self.trail = trail
        self.db = trail.db

    # -- reads -------------------------------------------------------------------------

    def get_user(self, name: str) -> User:
        with self.db.read() as session:
            user = session.execute(
                select(User).where(User.name == name).options(selectinload(User.grants))
            ).scalar_one_or_none()
        if user is None:
            raise NotFound(f"no user named {name!r}")
        return user

    def list_users(self) -> Sequence[User]:
        with self.db.read() as session:
            return (
                session.execute(select(User).options(selectinload(User.grants)).order_by(User.name))
                .scalars()
                .all()
            )

    def list_tokens(self, ctx: Context, user_name: str) -> Sequence[ApiToken]:
        self._check_token_owner(ctx, user_name)
        with self.db.read() as session:
            if session.execute(select(User.id).where(User.name == user_name)).first() is None:
                raise NotFound(f"no user named {user_name!r}")
            return (
                session.execute(
                    select(ApiToken)
                    .join(User)
                    .where(User.name == user_name)
                    .order_by(ApiToken.created_at)
                )
                .scalars()
                .all()
            )

    def user_count(self) -> int:
        with self.db.read() as session:
            return session.execute(select(func.count()).select_from(User)).scalar_one()

    def authenticate(self, secret: str) -> Actor:
        if not secret:
            raise Unauthenticated("missing bearer token")
        now = utcnow()
        with self.db.read() as session:
            row = session.execute(
                select(ApiToken)
                .where(ApiToken.secret_sha256 == hash_secret(secret))
                .options(selectinload(ApiToken.user).selectinload(User.grants))
            ).scalar_one_or_none()
        if row is None:
            raise Unauthenticated("unknown token")
        if row.revoked_at is not None:
            raise Unauthenticated("token has been revoked")
        if row.expires_at is not None and row.expires_at <= now:
            raise Unauthenticated("token has expired")
        if row.user.disabled:
            raise Unauthenticated(f"account {row.user.name!r} is disabled")
        return actor_of(row.user)

    def verify_password(self, name: str, password: str) -> Actor:
        with self.db.read() as session:
            user = session.execute(
                select(User).where(User.name == name).options(selectinload(User.grants))
            ).scalar_one_or_none()
        bad = Unauthenticated("unknown user or wrong password")
        if user is None or user.password_hash is None or user.disabled:
            _hasher.hash(password)  # same cost either way: no user enumeration by timing
            raise bad
        try:
            _hasher.verify(user.password_hash, password)
        except (VerificationError, InvalidHashError):
            raise bad from None
        return actor_of(user)

    # -- changes -----------------------------------------------------------------------

    def create_user(
        self,
        ctx: Context,
        *,
        name: str,
        roles: Sequence[str],
        reason: str | None,
        kind: str = "user",
        display_name: str = "",
        email: str = "",
        password: str | None = None,
    ) -> User:
        check_name(name)
        role_list = check_roles(roles)
        if kind not in USER_KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(USER_KINDS)}", field="kind")
        if password is not None and kind == "service_account":
            raise InvalidInput("service accounts authenticate with tokens only", field="password")
        if password is not None and len(password) < 12:
            raise InvalidInput("password must be at least 12 characters", field="password")
        with self.trail.change(ctx, Permission.USER_MANAGE, reason) as cs:
            if cs.session.execute(select(User.id).where(User.name == name)).first():
                raise Conflict(f"a user named {name!r} exists already", field="name")
            now = utcnow()
            user = User(
                name=name,
                kind=kind,
                display_name=display_name,
                email=email,
                password_hash=_hasher.hash(password) if password else None,
                created_at=now,
                created_by=ctx.actor.name,
                grants=[
                    RoleGrant(role=r, granted_at=now, granted_by=ctx.actor.name) for r in role_list
                ],
            )
            cs.session.add(user)
            cs.session.flush()
            cs.record(
                Action.USER_CREATE,
                f"user/{name}",
                {
                    "kind": kind,
                    "roles": role_list,
                    "display_name": display_name,
                    "email": email,
                    "password_set": password is not None,
                },
            )
        return user

    def update_user(
        self,
        ctx: Context,
        name: str,
        *,
        reason: str | None,
        disabled: bool | None = None,
        password: str | None = None,
        display_name: str | None = None,
        email: str | None = None,
    ) -> User:
        if password is not None and len(password) < 12:
            raise InvalidInput("password must be at least 12 characters", field="password")
        with self.trail.change(ctx, Permission.USER_MANAGE, reason) as cs:
            if disabled:
                self._lock_admins(cs.session)
            user = self._load_user(cs.session, name)
            changed: dict[str, object] = {}
            if disabled is not None and disabled != user.disabled:
                if disabled and Role.ADMIN in user.roles and self._admin_count(cs.session) <= 1:
                    raise Conflict("cannot disable the last admin", field="disabled")
                changed["disabled"] = {"old": user.disabled, "new": disabled}
                user.disabled = disabled
            if display_name is not None and display_name != user.display_name:
                changed["display_name"] = {"old": user.display_name, "new": display_name}
                user.display_name = display_name
            if email is not None and email != user.email:
                changed["email"] = {"old": user.email, "new": email}
                user.email = email
            if password is not None:
                if user.kind == "service_account":
                    raise InvalidInput(
                        "service accounts authenticate with tokens only", field="password"
                    )
                user.password_hash = _hasher.hash(password)
                changed["password"] = "changed"
            if not changed:
                raise InvalidInput("nothing to change", field="body")
            cs.record(Action.USER_UPDATE, f"user/{name}", changed)
        return user

    def grant_role(self, ctx: Context, name: str, role: str, reason: str | None) -> User:
        check_roles([role], field="role")
        with self.trail.change(ctx, Permission.USER_MANAGE, reason) as cs:
            user = self._load_user(cs.session, name)
            if role in user.roles:
                raise Conflict(f"{name!r} holds role {role!r} already", field="role")
            user.grants.append(RoleGrant(role=role, granted_at=utcnow(), granted_by=ctx.actor.name))
            cs.session.flush()
            cs.record(Action.USER_ROLE_GRANT, f"user/{name}", {"role": role})
        return user

    def revoke_role(self, ctx: Context, name: str, role: str, reason: str | None) -> User:
        check_roles([role], field="role")
        with self.trail.change(ctx, Permission.USER_MANAGE, reason) as cs:
            if role == Role.ADMIN:
                self._lock_admins(cs.session)
            user = self._load_user(cs.session, name)
            grant = next((g for g in user.grants if g.role == role), None)
            if grant is None:
                raise NotFound(f"{name!r} does not hold role {role!r}")
            if role == Role.ADMIN and self._admin_count(cs.session) <= 1:
                raise Conflict("cannot revoke the last admin", field="role")
            user.grants.remove(grant)
            cs.session.flush()
            cs.record(Action.USER_ROLE_REVOKE, f"user/{name}", {"role": role})
        return user

    def issue_token(
        self,
        ctx: Context,
        *,
        user_name: str,
        name: str,
        reason: str | None,
        expires_at: datetime | None = None,
        secret: str | None = None,
    ) -> IssuedToken:
        check_name(name)
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise InvalidInput("expires_at needs a time zone (e.g. 'Z')", field="expires_at")
            if expires_at <= utcnow():
                raise InvalidInput("expires_at is in the past", field="expires_at")
            try:
                expires_at.astimezone(UTC)  # as stored; 9999-12-31 at -14:00 is past year 9999
            except OverflowError:
                raise InvalidInput("expires_at is out of range", field="expires_at") from None
        permission = self._check_token_owner(ctx, user_name)
        secret = secret or new_token_secret()
        with self.trail.change(ctx, permission, reason) as cs:
            user = self._load_user(cs.session, user_name)
            token = ApiToken(
                id="tok_" + secrets.token_hex(8),
                user_id=user.id,
                name=name,
                secret_sha256=hash_secret(secret),
                created_at=utcnow(),
                created_by=ctx.actor.name,
                expires_at=expires_at,
            )
            cs.session.add(token)
            cs.session.flush()
            cs.record(
                Action.TOKEN_CREATE,
                f"user/{user_name}/tokens/{token.id}",
                {"name": name, "expires_at": expires_at.isoformat() if expires_at else None},
            )
        return IssuedToken(token=token, secret=secret)

    def revoke_token(self, ctx: Context, token_id: str, reason: str | None) -> ApiToken:
        with self.db.read() as session:
            token = session.execute(
                select(ApiToken).where(ApiToken.id == token_id).options(selectinload(ApiToken.user))
            ).scalar_one_or_none()
        if token is None:
            raise NotFound(f"no token with id {token_id!r}")
        permission = self._check_token_owner(ctx, token.user.name)
        with self.trail.change(ctx, permission, reason) as cs:
            row = cs.session.get(
                ApiToken, token_id, with_for_update=True, options=[selectinload(ApiToken.user)]
            )
            assert row is not None
            if row.revoked_at is not None:
                raise Conflict(f"token {token_id!r} is revoked already")
            row.revoked_at = utcnow()
            cs.record(
                Action.TOKEN_REVOKE, f"user/{token.user.name}/tokens/{token_id}", {"name": row.name}
            )
        return row

    def login(
        self,
        ctx: Context,
        *,
        user_name: str,
        password: str,
        token_name: str,
        reason: str | None,
        expires_at: datetime | None = None,
    ) -> IssuedToken:
        """Exchange a password for an API token of that user: expiring (12 hours unless asked
        otherwise, at most 30 days), issued and audited with the user as the actor."""
        now = utcnow()
        expires_at = expires_at or now + LOGIN_TOKEN_LIFETIME
        if expires_at.tzinfo is not None and expires_at > now + LOGIN_TOKEN_MAX_LIFETIME:
            raise InvalidInput("a login token lives at most 30 days", field="expires_at")
        actor = self.verify_password(user_name, password)
        return self.issue_token(
            replace(ctx, actor=actor),
            user_name=user_name,
            name=token_name,
            reason=reason,
            expires_at=expires_at,
        )

    def bootstrap_admin(self, ctx: Context, token_secret: str | None) -> str | None:
        """On an empty database, create ``admin`` and its first token; return the secret.

        Returns None when users exist already (the token was shown on the first start)."""
        if self.user_count():
            return None
        reason = "first start: bootstrap administrator"
        try:
            self.create_user(
                ctx, name="admin", roles=[Role.ADMIN], reason=reason, display_name="Administrator"
            )
        except Conflict:
            return None  # another replica won the race
        issued = self.issue_token(
            ctx, user_name="admin", name="bootstrap", reason=reason, secret=token_secret
        )
        return issued.secret

    # -- helpers -----------------------------------------------------------------------

    def _check_token_owner(self, ctx: Context, user_name: str) -> Permission:
        """Anyone may manage their own tokens; others' need ``token:manage``."""
        if ctx.actor.name == user_name and ctx.actor.kind != "system":
            return Permission.TOKEN_CREATE_OWN
        authorize(ctx, Permission.TOKEN_MANAGE)
        return Permission.TOKEN_MANAGE

    @staticmethod
    def _load_user(session: Session, name: str) -> User:
        user = session.execute(
            select(User)
            .where(User.name == name)
            .options(selectinload(User.grants))
            .with_for_update()
        ).scalar_one_or_none()
        if user is None:
            raise NotFound(f"no user named {name!r}")
        return user

    @staticmethod
    def _lock_admins(session: Session) -> None:
        """Lock every admin's row (in id order, before any other user row) so that two
        concurrent changes cannot each see another admin left and remove the last two."""
        session.execute(
            select(User.id)
            .join(RoleGrant)
            .where(RoleGrant.role == Role.ADMIN)
            .order_by(User.id)
            .with_for_update(of=User)
        ).all()

    @staticmethod
    def _admin_count(session: Session) -> int:
        return session.execute(
            select(func.count())
            .select_from(RoleGrant)
            .join(User)
            .where(RoleGrant.role == Role.ADMIN, User.disabled.is_(False))
        ).scalar_one()
