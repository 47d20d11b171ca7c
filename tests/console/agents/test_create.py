"""Creating an agent: the key is shown once, with the env lines and ready-to-paste snippets."""

from __future__ import annotations

import json

import pytest
from django.contrib.messages import get_messages

from accounts.models import Agent, AgentKey
from accounts.snippets import agent_snippets, mcp_config
from audit.models import Action, AuditEvent
from tests.console.agents.helpers import KEY, console_for, env_lines_on, page, snippets_on, take_shown_key
from tests.support.http import AgentClient

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://keys.acme.example"
ENDPOINTS = [
    f"GET {PUBLIC_URL}/api/tools",
    f"GET {PUBLIC_URL}/api/me",
    f"POST {PUBLIC_URL}/api/tools/{{id}}/request",
    f"POST {PUBLIC_URL}/api/tools/suggest",
    f"GET {PUBLIC_URL}/api/tools/{{id}}/credentials",
    f"POST {PUBLIC_URL}/api/tools/{{id}}/instructions/suggest",
]


@pytest.fixture(autouse=True)
def _public_url(settings):
    settings.AGENTKEY_PUBLIC_URL = PUBLIC_URL


def test_create_shows_the_key_once_and_never_again(owner, audit_log):
    client = console_for(owner)
    response = client.post("/agents/new", {"name": "Release-Bot", "description": "Cuts releases."})
    key = take_shown_key(response)
    agent = Agent.objects.get(org=owner.org, name="Release-Bot")
    assert AgentKey.objects.get(agent=agent).key_hash != key, "only the hash is stored"
    [event] = audit_log.new()
    assert event.action == Action.AGENT_CREATED
    assert event.actor_id == str(owner.user_id)
    assert event.agent_id == agent.id
    assert key not in str(event.metadata)

    # Nothing carries the key onward: no message, no session entry.
    assert not [m for m in get_messages(response.wsgi_request) if key in str(m)]
    assert all(key not in str(value) for value in client.session.values())

    # A reload is a GET: the empty form, no key. Nor do the agent's page or the list show it.
    reload = client.get("/agents/new")
    assert reload.status_code == 200
    assert not KEY.search(page(reload))
    assert 'name="name"' in page(reload)
    assert 'value="Release-Bot"' not in page(reload)
    for url in (f"/agents/{agent.id}/", "/agents/"):
        shown = client.get(url)
        assert shown.status_code == 200
        assert key not in page(shown)
        assert "Release-Bot" in page(shown)
    assert key[:13] in page(client.get(f"/agents/{agent.id}/")), "the agent page shows the key's prefix"

    # The key works over the agent API.
    me = AgentClient(key).me()
    assert me.status_code == 200
    assert me.json()["agent_name"] == "Release-Bot"


def test_the_key_page_gives_env_lines_and_snippets_without_the_key(owner):
    response = console_for(owner).post("/agents/new", {"name": "Docs-Agent"})
    key = take_shown_key(response)
    assert env_lines_on(response) == f"AGENTKEY_API_KEY={key}\nAGENTKEY_URL={PUBLIC_URL}"
    text = page(response)
    assert 'data-copy-target="agent-key"' in text
    assert 'data-copy-target="agent-env"' in text

    snippets = snippets_on(response)
    assert set(snippets) == {"claude-md", "agents-md", "cursorrules", "tools-md", "system-prompt"}
    for slug, snippet in snippets.items():
        assert f'data-copy-target="snippet-{slug}"' in text
        assert key not in snippet
        assert "sk_agent_" not in snippet
        assert "AGENTKEY_API_KEY" in snippet
        assert "Docs-Agent" in snippet
        assert mcp_config(PUBLIC_URL) in snippet, "the mcp.json block survives the page's escaping"


def test_every_snippet_teaches_the_whole_protocol():
    for snippet in agent_snippets(public_url=PUBLIC_URL + "/", agent_name="Docs-Agent"):
        text = snippet.text
        for endpoint in ENDPOINTS:
            _method, url = endpoint.split(" ")
            assert url in text, (snippet.title, url)
        assert "AGENTKEY_API_KEY" in text
        assert "Authorization: Bearer $AGENTKEY_API_KEY" in text
        assert "Retry-After" in text
        assert "429" in text
        assert "schema" in text
        assert "reason" in text
        assert "instructions" in text
        assert "Never print, echo, log, store, commit or paste a credential or your AgentKey key" in text
        assert "fetch it again" in text.lower()
        assert "Docs-Agent" in text
        assert PUBLIC_URL + "//" not in text
        assert "{" + "url}" not in text, "every placeholder is filled"
        assert "{env_key}" not in text
    titles = [s.title for s in agent_snippets(public_url=PUBLIC_URL, agent_name="x")]
    assert titles == ["CLAUDE.md", "AGENTS.md", ".cursorrules", "TOOLS.md", "System prompt"]


def test_every_snippet_carries_the_mcp_json_block_for_claude_code_and_cursor():
    for snippet in agent_snippets(public_url=PUBLIC_URL + "/", agent_name="Docs-Agent"):
        start = snippet.text.index('{\n  "mcpServers"')
        config, _end = json.JSONDecoder().raw_decode(snippet.text[start:])
        assert config == {
            "mcpServers": {
                "agentkey": {
                    "type": "http",
                    "url": f"{PUBLIC_URL}/mcp",
                    "headers": {"Authorization": "Bearer ${AGENTKEY_API_KEY}"},
                }
            }
        }, snippet.title
        for tool in (
            "list_tools",
            "request_access",
            "suggest_tool",
            "get_credential",
            "suggest_instructions",
        ):
            assert f"`{tool}`" in snippet.text
    markdown = agent_snippets(public_url=PUBLIC_URL, agent_name="x")[0].text
    assert "```json\n{\n" in markdown


def test_a_taken_name_or_an_empty_name_shows_the_form_again_without_a_key(owner, agent, audit_log):
    client = console_for(owner)
    taken = client.post("/agents/new", {"name": agent.name.upper()})
    assert taken.status_code == 200
    assert "already exists" in page(taken)
    assert not KEY.search(page(taken))
    empty = client.post("/agents/new", {"name": "   "})
    assert empty.status_code == 200
    assert not KEY.search(page(empty))
    assert Agent.objects.filter(org=owner.org).count() == 1
    assert audit_log.actions() == []


def test_an_admin_may_create_but_approvers_and_auditors_may_not(admin_member, approver, auditor, audit_log):
    for member in (approver, auditor):
        client = console_for(member)
        assert client.get("/agents/new").status_code == 403
        assert client.post("/agents/new", {"name": f"Nope-{member.role}"}).status_code == 403
        assert "New agent" not in page(client.get("/agents/"))
    assert not Agent.objects.filter(name__startswith="Nope-").exists()
    assert audit_log.actions() == []

    take_shown_key(console_for(admin_member).post("/agents/new", {"name": "By-Admin"}))
    assert audit_log.actions() == [Action.AGENT_CREATED]
    assert AuditEvent.objects.filter(action=Action.AGENT_CREATED, actor_id=str(admin_member.user_id)).exists()


def test_anonymous_visitors_are_sent_to_sign_in():
    from django.test import Client

    for url in ("/agents/", "/agents/new"):
        response = Client().get(url)
        assert response.status_code == 302
        assert "/accounts/login/" in response["Location"]
