"""Identity endpoints: users, service accounts, roles, tokens, and the caller itself."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, Path
from pydantic import EmailStr, Field, StringConstraints

from mlgov.api.deps import Services, anonymous_context, context, services
from mlgov.api.views import IssuedTokenOut, TokenOut, UserOut, token_out, user_out
from mlgov.context import Context
from mlgov.identity.permissions import Role
from mlgov.names import NAME_PATTERN
from mlgov.schemas import Name, Reasoned

UserName = Annotated[str, Path(pattern=NAME_PATTERN, description="User name")]
Password = Annotated[str, Field(min_length=12, max_length=1024)]
# Stored in a 256-character column (see identity.models): ShortText's 512 would not fit.
DisplayName = Annotated[str, StringConstraints(max_length=256)]


class UserCreate(Reasoned):
    name: Name
    roles: list[Role] = Field(default_factory=list, max_length=len(Role))
    kind: Literal["user", "service_account"] = "user"
    display_name: DisplayName = ""
    email: EmailStr | Literal[""] = ""
    password: Password | None = None


class UserUpdate(Reasoned):
    disabled: bool | None = None
    display_name: DisplayName | None = None
    email: EmailStr | Literal[""] | None = None
    password: Password | None = None


class RoleChange(Reasoned):
    role: Role


class TokenCreate(Reasoned):
    user: Name
    name: Name
    expires_at: datetime | None = None


class RevokeBody(Reasoned):
    pass


class LoginBody(Reasoned):
    user: Name
    password: Annotated[str, Field(min_length=1, max_length=1024)]
    token_name: Name = "login"
    expires_at: datetime | None = None


def me(ctx: Context = Depends(context), svc: Services = Depends(services)) -> UserOut:
    return user_out(svc.identity.get_user(ctx.actor.name))


def list_users(svc: Services = Depends(services)) -> list[UserOut]:
    return [user_out(u) for u in svc.identity.list_users()]


def get_user(name: UserName, svc: Services = Depends(services)) -> UserOut:
    return user_out(svc.identity.get_user(name))


def create_user(
    body: UserCreate, ctx: Context = Depends(context), svc: Services = Depends(services)
) -> UserOut:
    user = svc.identity.create_user(
        ctx,
        name=body.name,
        roles=[r.value for r in body.roles],
        reason=body.reason,
        kind=body.kind,
        display_name=body.display_name,
        email=body.email or "",
        password=body.password,
    )
    return user_out(user)


def update_user(
    name: UserName,
    body: UserUpdate,
    ctx: Context = Depends(context),
    svc: Services = Depends(services),
) -> UserOut:
    user = svc.identity.update_user(
        ctx,
        name,
        reason=body.reason,
        disabled=body.disabled,
        password=body.password,
        display_name=body.display_name,
        email=body.email,
    )
    return user_out(user)


def grant_role(
    name: UserName,
    body: RoleChange,
    ctx: Context = Depends(context),
    svc: Services = Depends(services),
) -> UserOut:
    return user_out(svc.identity.grant_role(ctx, name, body.role.value, body.reason))


def revoke_role(
    name: UserName,
    role: Role,
    body: RevokeBody,
    ctx: Context = Depends(context),
    svc: Services = Depends(services),
) -> UserOut:
    return user_out(svc.identity.revoke_role(ctx, name, role.value, body.reason))


def create_token(
    body: TokenCreate, ctx: Context = Depends(context), svc: Services = Depends(services)
) -> IssuedTokenOut:
    issued = svc.identity.issue_token(
        ctx, user_name=body.user, name=body.name, reason=body.reason, expires_at=body.expires_at
    )
    return IssuedTokenOut(**token_out(issued.token, body.user).model_dump(), token=issued.secret)


def list_tokens(
    name: UserName, ctx: Context = Depends(context), svc: Services = Depends(services)
) -> list[TokenOut]:
    return [token_out(t, name) for t in svc.identity.list_tokens(ctx, name)]


def revoke_token(
    token_id: Annotated[str, Path(pattern=r"^tok_[0-9a-f]{16}$")],
    body: RevokeBody,
    ctx: Context = Depends(context),
    svc: Services = Depends(services),
) -> TokenOut:
    token = svc.identity.revoke_token(ctx, token_id, body.reason)
    return token_out(token, token.user.name)


def login(
    body: LoginBody,
    ctx: Context = Depends(anonymous_context),
    svc: Services = Depends(services),
) -> IssuedTokenOut:
    """Exchange a user's password for an expiring API token (12 hours by default, at most 30
    days). The token is shown once; issuing it is audited with the user as the actor. Wrong
    user and wrong password get the same 401."""
    issued = svc.identity.login(
        ctx,
        user_name=body.user,
        password=body.password,
        token_name=body.token_name,
        reason=body.reason,
        expires_at=body.expires_at,
    )
    return IssuedTokenOut(**token_out(issued.token, body.user).model_dump(), token=issued.secret)
