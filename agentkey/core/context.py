"""Per-request context (request id, client address) for the audit log and logs.

Set by :class:`agentkey.core.middleware.RequestContextMiddleware`; read by any
layer without passing the request object down into services.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    request_id: str = ""
    ip: str | None = None


_current: ContextVar[RequestContext] = ContextVar(
    "agentkey_request_context",
    default=RequestContext(),  # noqa: B039  (frozen dataclass: immutable)
)


def current() -> RequestContext:
    return _current.get()


def bind(ctx: RequestContext) -> object:
    return _current.set(ctx)


def reset(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
