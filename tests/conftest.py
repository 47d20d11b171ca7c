"""Personas and plumbing shared by every suite (tests read like specs: STYLE §11)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

import accounts.keys
import vault.services
from accounts.models import Role
from accounts.services import IssuedAgent
from audit.models import AuditEvent
from catalog.models import CredentialMode, Tool
from tests import factories
from tests.support.http import AgentClient
from tests.support.secret_watch import WATCH, CaptureHandler

# --- the secret watch (session-wide) -------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _secret_watch(django_db_blocker: Any) -> Iterator[None]:
    from django.conf import settings

    from agentkey.core import api as core_api

    patcher = pytest.MonkeyPatch()
    original_encode = vault.services._encode
    original_generate = accounts.keys.generate
    original_handler = core_api.exception_handler
    original_request = Client.request

    def encode(plaintext: str) -> bytes:
        WATCH.register(plaintext)
        return original_encode(plaintext)

    def generate() -> str:
        key = original_generate()
        WATCH.register(key)
        return key

    def exception_handler(exc: Exception, context: Any) -> Any:
        WATCH.record(f"exception {type(exc).__name__}", str(exc))
        return original_handler(exc, context)

    def request(self: Client, **req: Any) -> Any:
        response = original_request(self, **req)
        headers = "\n".join(f"{k}: {v}" for k, v in response.items())
        body = b"" if getattr(response, "streaming", False) else response.content
        WATCH.record_response(
            req.get("REQUEST_METHOD", "?"), req.get("PATH_INFO", "?"), response.status_code, headers, body
        )
        return response

    patcher.setattr(vault.services, "_encode", encode)
    patcher.setattr(accounts.keys, "generate", generate)
    patcher.setattr(core_api, "exception_handler", exception_handler)
    patcher.setattr(Client, "request", request)
    for entry in (settings.AGENTKEY_MASTER_KEYS, settings.TEST_MASTER_KEY_B):
        WATCH.register(entry.split(":", 1)[1])
    handler = CaptureHandler(level=logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        patcher.undo()
    leaks = WATCH.leaks()
    assert not leaks, f"secret values leaked into logs/responses/exceptions: {leaks[:10]}"


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    """Rate-limit counters live in Redis; every test starts with a full budget."""
    cache.clear()


@pytest.fixture(scope="session", autouse=True)
def _flush_past_audit_trigger() -> Iterator[None]:
    """Let TransactionTestCase's flush empty the append-only table between tests.

    Flushing TRUNCATEs every table, which the audit trigger refuses; the test
    run is a superuser, so it may switch triggers off for the flush alone
    (session_replication_role), exactly as a superuser could in production.
    """
    from django.db.backends.postgresql.operations import DatabaseOperations

    original = DatabaseOperations.execute_sql_flush

    def flush(self: DatabaseOperations, sql_list: list[str]) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = replica")
        try:
            original(self, sql_list)
        finally:
            with self.connection.cursor() as cursor:
                cursor.execute("SET session_replication_role = DEFAULT")

    patcher = pytest.MonkeyPatch()
    patcher.setattr(DatabaseOperations, "execute_sql_flush", flush)
    yield
    patcher.undo()


# --- personas ------------------------------------------------------------------------------------


@pytest.fixture
def org(db: Any) -> Any:
    return factories.make_org("Acme")


@pytest.fixture
def other_org(db: Any) -> Any:
    return factories.make_org("Globex")


@pytest.fixture
def operator() -> Any:
    return factories.OPERATOR


@pytest.fixture
def owner(org: Any) -> Any:
    return factories.make_member(org, Role.OWNER)


@pytest.fixture
def admin_member(org: Any) -> Any:
    return factories.make_member(org, Role.ADMIN)


@pytest.fixture
def approver(org: Any) -> Any:
    return factories.make_member(org, Role.APPROVER)


@pytest.fixture
def auditor(org: Any) -> Any:
    return factories.make_member(org, Role.AUDITOR)


@pytest.fixture
def stranger_approver(other_org: Any) -> Any:
    return factories.make_member(other_org, Role.APPROVER)


@pytest.fixture
def issued(org: Any) -> IssuedAgent:
    return factories.make_agent(org, "Onboarding-Agent")


@pytest.fixture
def agent(issued: IssuedAgent) -> Any:
    return issued.agent


@pytest.fixture
def api(issued: IssuedAgent) -> AgentClient:
    return AgentClient(issued.key.plaintext)


@pytest.fixture
def stranger(other_org: Any) -> IssuedAgent:
    return factories.make_agent(other_org, "Stranger-Agent")


@pytest.fixture
def stranger_api(stranger: IssuedAgent) -> AgentClient:
    return AgentClient(stranger.key.plaintext)


@pytest.fixture
def anonymous() -> AgentClient:
    return AgentClient(None)


@pytest.fixture
def credential() -> str:
    return factories.new_credential("lin_api")


@pytest.fixture
def tool(org: Any, credential: str) -> Tool:
    return factories.make_tool(
        org, "Linear", url="https://linear.app", credential=credential, usage_guide="Team key: PLATFORM."
    )


@pytest.fixture
def per_agent_tool(org: Any) -> Tool:
    return factories.make_tool(org, "GitHub", mode=CredentialMode.PER_AGENT, url="https://github.com")


@pytest.fixture
def admin_client_for(db: Any) -> Any:
    """A logged-in Django admin client (a superuser by default)."""

    def make(user: Any = None) -> Client:
        client = Client()
        client.force_login(user or factories.make_user(is_staff=True, is_superuser=True))
        return client

    return make


# --- audit ---------------------------------------------------------------------------------------


class AuditLog:
    """Events written since the test (or the last mark) began."""

    def __init__(self) -> None:
        self.mark()

    def mark(self) -> None:
        self._after = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0

    def new(self) -> list[AuditEvent]:
        return list(AuditEvent.objects.filter(id__gt=self._after).order_by("id"))

    def actions(self) -> list[str]:
        return [e.action for e in self.new()]


@pytest.fixture
def audit_log(db: Any) -> AuditLog:
    return AuditLog()
