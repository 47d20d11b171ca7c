"""Helpers for the tools pages: a console client per member, agents that ask and suggest."""

from __future__ import annotations

from typing import Any

from django.test import Client

from grants.services import grant_assign
from tests import factories
from tests.support.http import AgentClient


def console_for(membership: Any) -> Client:
    client = Client()
    client.force_login(membership.user)
    return client


def page(client: Client, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code)
    return response.content.decode()


def agent_client(org: Any, name: str) -> tuple[Any, AgentClient]:
    issued = factories.make_agent(org, name)
    return issued.agent, AgentClient(issued.key.plaintext)


def with_access(agent: Any, tool: Any, **kwargs: Any) -> Any:
    return grant_assign(agent=agent, tool=tool, actor=factories.OPERATOR, **kwargs)
