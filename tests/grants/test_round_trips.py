"""The hot paths stay at a fixed number of database round trips (DESIGN §5)."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from grants.services import grant_assign
from tests import factories
from tests.support.http import AgentClient

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_vend_is_three_queries_in_autocommit(org, operator, django_assert_num_queries):
    issued = factories.make_agent(org)
    tool = factories.make_tool(org)
    grant_assign(agent=issued.agent, tool=tool, actor=operator)
    client = AgentClient(issued.key.plaintext)
    client.credentials(tool.id)  # warm the connection
    # 1 key + agent lookup, 1 grant + tool + secret, 1 audit INSERT (committed on return).
    with django_assert_num_queries(3) as captured:
        assert client.credentials(tool.id).status_code == 200
    assert captured.captured_queries[-1]["sql"].startswith('INSERT INTO "audit_auditevent"')


@pytest.mark.parametrize("tools", [1, 40])
def test_listing_tools_is_two_queries_however_many_tools(org, tools, django_assert_num_queries):
    issued = factories.make_agent(org)
    for _ in range(tools):
        factories.make_tool(org)
    client = AgentClient(issued.key.plaintext)
    with django_assert_num_queries(2):
        assert len(client.tools().json()["tools"]) == tools
    with django_assert_num_queries(2):
        assert client.me().json()["tools_available"] == tools


def _prepared_on_this_connection() -> dict[str, int]:
    """Statement text -> how many times it ran as a prepared statement, in this session."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements")
        return dict(cursor.fetchall())


@pytest.mark.parametrize("prepare", [True, False])
def test_the_vend_statements_are_prepared_once_per_connection(org, operator, monkeypatch, prepare):
    assert connection.settings_dict["OPTIONS"]["prepare_threshold"] == 0  # AGENTKEY_DB_PREPARE's default
    if not prepare:
        monkeypatch.delitem(connection.settings_dict["OPTIONS"], "prepare_threshold")
    issued = factories.make_agent(org)
    tool = factories.make_tool(org)
    grant_assign(agent=issued.agent, tool=tool, actor=operator)
    client = AgentClient(issued.key.plaintext)
    connection.close()  # a new session: nothing prepared yet
    for _ in range(3):
        assert client.credentials(tool.id).status_code == 200

    prepared = _prepared_on_this_connection()
    runs = {
        kind: [n for statement, n in prepared.items() if statement.startswith(start)]
        for kind, start in [
            ("key", 'SELECT "k"."id"'),
            ("grant", 'SELECT "g"."id"'),
            ("audit", 'INSERT INTO "audit_auditevent"'),
        ]
    }
    if prepare:
        # Each prepared once in this session and run by every vend (the vends' audit rows
        # share one parameter-type signature, so one INSERT).
        assert runs == {"key": [3], "grant": [3], "audit": [3]}, prepared
    else:
        assert runs == {"key": [], "grant": [], "audit": []}, prepared


def test_a_migration_that_changes_a_selected_column_does_not_break_the_prepared_vend(org, operator):
    """PostgreSQL refuses a prepared SELECT whose result type changed ("cached plan must not
    change result type"); the statement is prepared afresh on a new connection instead of every
    vend on this connection answering 503 until it is recycled."""
    issued = factories.make_agent(org)
    tool = factories.make_tool(org)
    grant_assign(agent=issued.agent, tool=tool, actor=operator)
    client = AgentClient(issued.key.plaintext)
    assert client.credentials(tool.id).status_code == 200  # the key lookup is prepared now
    before = connection.connection

    def migrate(length: int) -> None:  # as `manage.py migrate` would, from another session
        with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
            other.execute(f"ALTER TABLE accounts_agentkey ALTER COLUMN prefix TYPE varchar({length})")

    migrate(32)
    try:
        assert client.credentials(tool.id).status_code == 200
        assert connection.connection is not before  # the stale statement left with its connection
        assert client.credentials(tool.id).status_code == 200
    finally:
        migrate(16)
