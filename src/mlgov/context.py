"""Who is acting and on which request: passed from the edge (API, CLI bootstrap, worker)
into every service call."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Actor:
    name: str
    kind: str  # "user" | "service_account" | "system" | "anonymous" (before login)
    roles: frozenset[str] = frozenset()
    user_id: int | None = None

    @property
    def is_system(self) -> bool:
        return self.kind == "system"


SYSTEM = Actor(name="system", kind="system")


@dataclass(frozen=True)
class Context:
    actor: Actor
    request_id: str = "-"
    client_addr: str | None = field(default=None)


def system_context(request_id: str = "system") -> Context:
    return Context(actor=SYSTEM, request_id=request_id)
