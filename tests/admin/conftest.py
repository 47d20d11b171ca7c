"""Helpers for driving the operator console like a browser does."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.contrib.messages import get_messages
from django.db.models import Model

from accounts.models import Agent, AgentKey, Membership, Organization, Role, User
from audit.models import AuditEvent
from catalog.models import GuideSuggestion, Tool, ToolSuggestion
from catalog.services import tool_suggest
from grants.anomalies import alert_raise
from grants.models import AccessGrant, Alert, AlertRule, AlertSeverity
from grants.services import grant_approve, grant_request, guide_suggest_as_agent
from notifications.models import DEFAULT_EVENTS, Delivery, DeliveryStatus, Event, WebhookEndpoint
from notifications.services import endpoint_create
from tests import factories
from tests.support.secret_watch import WATCH
from vault.models import Secret

GRANTS = "/admin/grants/accessgrant/"
TOOLS = "/admin/catalog/tool/"
AGENTS = "/admin/accounts/agent/"
SUGGESTIONS = "/admin/catalog/toolsuggestion/"
GUIDE_SUGGESTIONS = "/admin/catalog/guidesuggestion/"
AUDIT = "/admin/audit/auditevent/"

KEY = re.compile(r"sk_agent_[A-Za-z0-9_-]{32}")


@pytest.fixture
def console(admin_client_for: Any) -> Any:
    """The operator console as a superuser."""
    return admin_client_for()


@pytest.fixture
def staff_member(admin_client_for: Any) -> Any:
    """A console client for a staff user with the given role(s): staff_member((org, Role.APPROVER), ...)."""

    def make(*roles: tuple[Any, Role]) -> Any:
        user = factories.make_user(is_staff=True)
        for org, role in roles:
            factories.make_member(org, role, user=user)
        return admin_client_for(user)

    return make


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def html(response: Any) -> str:
    return str(response.content.decode())


def action(name: str, *ids: Any, **fields: Any) -> dict[str, Any]:
    """The POST body of an admin action on the changelist (``apply="1"`` confirms it)."""
    return {"action": name, "_selected_action": [str(i) for i in ids], **fields}


def take_shown_key(response: Any) -> str:
    """The agent key on the key-shown-once page, which must show it exactly once.

    That page is the one place a key may appear in a response (as the vend body is for
    credentials), so this response, and only it, is taken out of the session's secret
    watch; every other response that contains the key still fails the run.
    """
    assert response.status_code == 200
    page = html(response)
    keys: list[str] = KEY.findall(page)
    assert len(keys) == 1, keys
    key = keys[0]
    assert page.count(key) == 1
    assert "will not be shown again" in page
    where = f"{response.wsgi_request.method} {response.wsgi_request.path} -> 200"
    with WATCH.lock:
        WATCH.corpus[:] = [(w, text) for (w, text) in WATCH.corpus if not (w == where and key in text)]
    return key


class _FormReader(HTMLParser):
    """Collects the fields a browser would submit from the page's main POST form."""

    def __init__(self, form_id: str | None) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.done = False
        self.data: dict[str, list[str]] = {}
        self.select: str | None = None
        self.select_default: str | None = None
        self.select_chosen = False
        self.textarea: str | None = None
        self.text = ""

    def _add(self, name: str, value: str) -> None:
        self.data.setdefault(name, []).append(value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and not self.done and a.get("method", "").lower() == "post":
            # The header's logout button is a form too; the page's own form is the other one.
            wanted = a.get("id") == self.form_id if self.form_id else a.get("id") != "logout-form"
            self.inside = wanted
            return
        if not self.inside:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text").lower()
            if kind in ("submit", "button", "image", "reset", "file"):
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            self._add(name, a.get("value", "on" if kind in ("checkbox", "radio") else ""))
        elif tag == "select" and name:
            self.select, self.select_default, self.select_chosen = name, None, False
        elif tag == "option" and self.select is not None:
            value = a.get("value", "")
            if self.select_default is None:
                self.select_default = value
            if "selected" in a and not self.select_chosen:
                self._add(self.select, value)
                self.select_chosen = True
        elif tag == "textarea" and name:
            self.textarea, self.text = name, ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.inside:
            self.inside, self.done = False, True
        elif tag == "select" and self.select is not None:
            if not self.select_chosen and self.select_default is not None:
                self._add(self.select, self.select_default)
            self.select = None
        elif tag == "textarea" and self.textarea is not None:
            # Browsers drop the newline that directly follows <textarea>.
            self._add(self.textarea, self.text.removeprefix("\n"))
            self.textarea = None

    def handle_data(self, data: str) -> None:
        if self.textarea is not None:
            self.text += data


def form_data(response: Any, form_id: str | None = None) -> dict[str, Any]:
    """What submitting the page's form unchanged would POST (browser-style, CRLF line breaks)."""
    reader = _FormReader(form_id)
    reader.feed(html(response))
    return {
        name: [v.replace("\r\n", "\n").replace("\n", "\r\n") for v in values]
        if len(values) > 1
        else values[0].replace("\r\n", "\n").replace("\n", "\r\n")
        for name, values in reader.data.items()
    }


@pytest.fixture
def world(org, issued, tool, approver) -> dict[type[Model], Model]:
    """One row of every registered model."""
    agent = issued.agent
    grant = grant_request(agent=agent, tool=tool, reason="Filing the bugs I find.")
    grant_approve(grant=grant, reviewer=factories.OPERATOR)
    suggestion = tool_suggest(
        agent=agent, name="Notion", url="https://notion.so", reason="The docs live there."
    )
    guide = guide_suggest_as_agent(
        agent=agent,
        tool=tool,
        learned="Put every issue in team PLATFORM.",
        why="Saves the next agent an hour.",
    )
    endpoint = endpoint_create(
        org=org,
        actor=factories.OPERATOR,
        name="#agent-requests",
        kind="generic",
        url=f"https://hooks.example.com/{factories.new_credential('hook')}",
        events=DEFAULT_EVENTS,
    )
    return {
        User: approver.user,
        Organization: org,
        Membership: approver,
        Agent: agent,
        AgentKey: issued.key.key,
        Secret: Secret.objects.get(pk=tool.secret_id),
        AuditEvent: AuditEvent.objects.order_by("-id").first(),
        Tool: tool,
        ToolSuggestion: suggestion.suggestion,
        GuideSuggestion: guide.suggestion,
        AccessGrant: grant,
        EmailAddress: EmailAddress.objects.create(
            user=approver.user, email=approver.user.email, verified=True
        ),
        Authenticator: TOTP.activate(approver.user, generate_totp_secret()).instance,
        WebhookEndpoint: endpoint,
        Delivery: Delivery.objects.create(
            org=org,
            endpoint=endpoint,
            channel=endpoint.kind,
            event=Event.ACCESS_REQUESTED,
            payload={
                "subject": {"agent": agent.name, "tool": tool.name},
                "link": "https://agentkey.example/",
            },
            status=DeliveryStatus.DEAD,
            attempts=8,
            last_status_code=500,
            last_error="The endpoint answered HTTP 500. Gave up after 8 attempts.",
        ),
        Alert: alert_raise(
            rule=AlertRule.NEW_TOOLS_BURST,
            severity=AlertSeverity.MEDIUM,
            summary=f"{agent.name} asked for 5 tools it never had within 10 minutes",
            window_start=grant.requested_at,
            org=org,
            agent=agent,
        ),
    }
