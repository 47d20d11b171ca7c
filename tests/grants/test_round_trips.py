"""The hot paths stay at a fixed number of database round trips (DESIGN §5)."""

from __future__ import annotations

import pytest

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
