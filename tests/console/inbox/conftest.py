"""Helpers for the inbox suites: console clients and things waiting for a decision."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

from catalog.services import guide_suggest, tool_suggest
from grants.services import grant_request
from tests import factories


def console_for(membership: Any) -> Client:
    client = Client()
    client.force_login(membership.user)
    return client


@pytest.fixture
def owner_console(owner: Any) -> Client:
    return console_for(owner)


@pytest.fixture
def make_request(org: Any) -> Any:
    """A pending access request from a new agent (or the given one)."""

    def make(
        tool: Any,
        *,
        agent: Any = None,
        reason: str = "I file the sprint's bugs there.",
        duration: timedelta | None = None,
    ) -> Any:
        agent = agent or factories.make_agent(org).agent
        return grant_request(agent=agent, tool=tool, reason=reason, duration=duration)

    return make


@pytest.fixture
def suggest_tool(org: Any) -> Any:
    """A tool suggestion backed by the named agents (created in order)."""

    def make(name: str, *backers: str, url: str = "") -> Any:
        suggestion = None
        for backer in backers:
            agent = factories.make_agent(org, backer).agent
            suggestion = tool_suggest(agent=agent, name=name, url=url, reason=f"{backer} needs {name}.")
        assert suggestion is not None
        return suggestion.suggestion

    return make


@pytest.fixture
def suggest_guide(org: Any) -> Any:
    def make(tool: Any, learned: str, *backers: str) -> Any:
        suggestion = None
        for backer in backers:
            agent = factories.make_agent(org, backer).agent
            suggestion = guide_suggest(agent=agent, tool=tool, learned=learned, why=f"{backer} lost an hour.")
        assert suggestion is not None
        return suggestion.suggestion

    return make
