"""Catalog writers that used to deadlock or undo each other."""

from __future__ import annotations

from functools import partial

import pytest

from catalog.models import SuggestionStatus, ToolSuggestion
from catalog.services import tool_suggestion_dismiss
from grants.services import tool_add
from tests import factories
from tests.grants.test_concurrency import run_together
from tests.support.http import AgentClient

pytestmark = pytest.mark.django_db(transaction=True)


def suggest_status(key: str, name: str) -> int:
    return int(AgentClient(key).suggest(name).status_code)


def test_adding_a_tool_while_agents_suggest_it_never_deadlocks(org, operator):
    keys = [factories.make_agent(org, f"racer-{i}").key.plaintext for i in range(6)]
    AgentClient(keys[0]).suggest("Linear", url="https://linear.app")
    for round_ in range(4):
        name = f"Tool {round_}"
        AgentClient(keys[0]).suggest(name)
        results = run_together(
            partial(tool_add, org=org, actor=operator, name=name, credential=factories.new_credential()),
            *[partial(suggest_status, key, name) for key in keys[1:]],
        )
        assert not [r for r in results if isinstance(r, Exception)], results
        assert set(results[1:]) <= {201, 409}, "each agent either backed the suggestion or was redirected"


def test_a_dismissal_racing_a_new_backer_is_never_undone(org, admin_member):
    keys = [factories.make_agent(org, f"backer-{i}").key.plaintext for i in range(4)]
    for round_ in range(4):
        name = f"Contested {round_}"
        AgentClient(keys[0]).suggest(name)
        suggestion = ToolSuggestion.objects.get(name=name)
        results = run_together(
            partial(tool_suggestion_dismiss, suggestion=suggestion, actor=admin_member),
            *[partial(suggest_status, key, name) for key in keys[1:]],
        )
        assert not [r for r in results if isinstance(r, Exception)], results
        suggestion.refresh_from_db()
        assert suggestion.status == SuggestionStatus.DISMISSED, "the admin's decision stands"
        assert suggestion.dismissed_until is not None
        assert set(results[1:]) <= {201, 409}, "backed before the dismissal, or refused by its cooldown"
