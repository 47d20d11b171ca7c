"""No audit row, no credential (DESIGN §5): the vend fails closed with 503 when the event cannot be written."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection

from audit.models import Action, AuditEvent
from grants.services import grant_assign

UNAVAILABLE = {
    "error": "The service is temporarily unavailable.",
    "hint": "Retry in a few seconds. If this persists, tell a human operator.",
}

CREATE_REFUSAL = """
CREATE FUNCTION test_refuse_audit_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit storage unavailable (test)';
END;
$$;
CREATE TRIGGER test_refuse_audit_insert BEFORE INSERT ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION test_refuse_audit_insert();
"""
DROP_REFUSAL = """
DROP TRIGGER IF EXISTS test_refuse_audit_insert ON audit_auditevent;
DROP FUNCTION IF EXISTS test_refuse_audit_insert();
"""


def _refuse_audit_inserts() -> None:
    with connection.cursor() as cursor:
        cursor.execute(CREATE_REFUSAL)


def _allow_audit_inserts() -> None:
    with connection.cursor() as cursor:
        cursor.execute(DROP_REFUSAL)


def _vended_events(tool_id: object) -> int:
    return AuditEvent.objects.filter(action=Action.CREDENTIAL_VENDED, target_id=str(tool_id)).count()


def _assert_fails_closed(api, tool, credential: str) -> None:
    before = _vended_events(tool.id)
    response = api.credentials(tool.id)
    assert response.status_code == 503
    assert response.json() == UNAVAILABLE
    assert response["Retry-After"] == "5"
    assert credential.encode() not in response.content
    assert "credential" not in response.json()
    assert _vended_events(tool.id) == before


def _assert_vends(api, tool, credential: str) -> None:
    before = _vended_events(tool.id)
    response = api.credentials(tool.id)
    assert response.status_code == 200
    assert response.json()["credential"] == credential
    assert _vended_events(tool.id) == before + 1


@pytest.mark.django_db
def test_vend_answers_503_without_the_credential_when_the_audit_insert_fails(
    api, agent, tool, credential, operator
) -> None:
    grant_assign(agent=agent, tool=tool, actor=operator)
    _assert_vends(api, tool, credential)

    _refuse_audit_inserts()  # inside the test transaction: rolled back with it
    _assert_fails_closed(api, tool, credential)
    _assert_fails_closed(api, tool, credential)

    _allow_audit_inserts()
    _assert_vends(api, tool, credential)


@pytest.fixture
def refusal_cleanup() -> Iterator[None]:
    """A transactional test commits the trigger; make sure it never outlives the test."""
    yield
    _allow_audit_inserts()


@pytest.mark.django_db(transaction=True)
def test_vend_fails_closed_on_the_autocommit_path(
    api, agent, tool, credential, operator, refusal_cleanup
) -> None:
    grant_assign(agent=agent, tool=tool, actor=operator)
    assert connection.get_autocommit()
    _assert_vends(api, tool, credential)

    _refuse_audit_inserts()
    try:
        _assert_fails_closed(api, tool, credential)
    finally:
        _allow_audit_inserts()

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'test_refuse_audit_insert'")
        row = cursor.fetchone()
    assert row == (0,)
    _assert_vends(api, tool, credential)
