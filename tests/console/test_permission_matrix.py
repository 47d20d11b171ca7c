"""Every console URL, for every role and a member of another organization → the expected outcome.

Generated from the URL configuration: a console URL that is not in SPECS fails
`test_every_console_url_has_an_entry`, so a new page cannot ship without
deciding who may use it. Outcomes: LOGIN (redirect to sign-in), FORBIDDEN (403),
NOT_FOUND (404, another organization's object), OK (rendered or redirected
after acting — never a login redirect, never 403/404/500).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from accounts.members import invitation_create
from accounts.models import Role
from accounts.permissions import ROLE_CAPABILITIES, Capability
from catalog.models import DraftStatus, GuideDraft
from catalog.services import guide_suggest, tool_suggest
from grants.services import grant_assign, grant_request
from notifications.models import Delivery, DeliveryStatus, Event
from notifications.services import endpoint_create
from tests import factories

pytestmark = pytest.mark.django_db

LOGIN, FORBIDDEN, NOT_FOUND, OK = "login", "forbidden", "not_found", "ok"
ROLES = [Role.OWNER, Role.ADMIN, Role.APPROVER, Role.AUDITOR]
PERSONAS = ["anonymous", *[r.value for r in ROLES], "outsider"]


@dataclass(frozen=True)
class Spec:
    method: str
    capability: Capability | None = Capability.VIEW  # None: any signed-in person
    scoped: bool = False  # the URL names an object of the organization
    public: bool = False  # no sign-in needed
    kwargs: dict[str, str] = field(default_factory=dict)  # URL kwarg -> world key


V, A, T, D, R, M = (
    Capability.VIEW,
    Capability.MANAGE_AGENTS,
    Capability.MANAGE_TOOLS,
    Capability.DECIDE_GRANTS,
    Capability.READ_AUDIT,
    Capability.MANAGE_MEMBERS,
)
AGENT = {"agent_id": "agent"}
TOOL = {"tool_id": "tool"}
PENDING = {"grant_id": "pending"}
DRAFT = {"draft_id": "draft"}

SPECS: dict[str, Spec] = {
    "home": Spec("GET"),
    "org_create": Spec("GET", capability=None),
    "org_switch": Spec("POST", capability=None),
    "org_settings": Spec("POST", Capability.MANAGE_ORG),
    "org_lifecycle": Spec("POST", Capability.MANAGE_ORG),
    "members": Spec("GET"),
    "member_invite": Spec("POST", M),
    "member_role": Spec("POST", V, scoped=True, kwargs={"member_id": "member"}),
    "member_remove": Spec("POST", V, scoped=True, kwargs={"member_id": "member"}),
    "invitation_revoke": Spec("POST", M, scoped=True, kwargs={"invitation_id": "invitation"}),
    "invitation": Spec("GET", public=True, kwargs={"token": "token"}),
    "inbox": Spec("GET"),
    "inbox_count": Spec("GET"),
    "grant_approve": Spec("POST", D, scoped=True, kwargs=PENDING),
    "grant_deny": Spec("POST", D, scoped=True, kwargs=PENDING),
    "grant_approve_bulk": Spec("POST", D),
    "grant_revoke": Spec("POST", D, scoped=True, kwargs={"grant_id": "approved"}),
    "grant_extend": Spec("POST", D, scoped=True, kwargs={"grant_id": "approved"}),
    "inbox_tool_suggestion_dismiss": Spec("POST", T, scoped=True, kwargs={"suggestion_id": "suggestion"}),
    "inbox_guide_accept": Spec("POST", T, scoped=True, kwargs={"suggestion_id": "guide_suggestion"}),
    "inbox_guide_dismiss": Spec("POST", T, scoped=True, kwargs={"suggestion_id": "guide_suggestion"}),
    "agents": Spec("GET"),
    "agent_create": Spec("GET", A),
    "agent": Spec("GET", V, scoped=True, kwargs=AGENT),
    "agent_rotate": Spec("POST", A, scoped=True, kwargs=AGENT),
    "agent_suspend": Spec("POST", A, scoped=True, kwargs=AGENT),
    "agent_reactivate": Spec("POST", A, scoped=True, kwargs=AGENT),
    "agent_owner": Spec("POST", A, scoped=True, kwargs=AGENT),
    "agent_valid_until": Spec("POST", A, scoped=True, kwargs=AGENT),
    "reviews": Spec("GET"),
    "review_recertify": Spec("POST", D, scoped=True, kwargs={"grant_id": "approved"}),
    "review_revoke": Spec("POST", D, scoped=True, kwargs={"grant_id": "approved"}),
    "tools": Spec("GET"),
    "tool_create": Spec("GET", T),
    "tool": Spec("GET", V, scoped=True, kwargs=TOOL),
    "tool_edit": Spec("GET", T, scoped=True, kwargs=TOOL),
    "tool_rotate": Spec("GET", T, scoped=True, kwargs=TOOL),
    "tool_guide": Spec("GET", V, scoped=True, kwargs=TOOL),
    "tool_guide_update": Spec("POST", T, scoped=True, kwargs=TOOL),
    "tool_guide_version": Spec("GET", V, scoped=True, kwargs={**TOOL, "version": "version"}),
    "tool_guide_restore": Spec("POST", T, scoped=True, kwargs={**TOOL, "version": "version"}),
    "tool_guide_suggestion_accept": Spec(
        "POST", T, scoped=True, kwargs={**TOOL, "suggestion_id": "guide_suggestion"}
    ),
    "tool_guide_suggestion_dismiss": Spec(
        "POST", T, scoped=True, kwargs={**TOOL, "suggestion_id": "guide_suggestion"}
    ),
    "audit": Spec("GET", R),
    "alerts": Spec("GET"),
    "alert_acknowledge": Spec("POST", D, scoped=True, kwargs={"alert_id": "alert"}),
    "org_kill_switch": Spec("POST", Capability.MANAGE_ORG),
    "audit_export": Spec("GET", R),
    "notifications": Spec("GET"),
    "notification_create": Spec("GET", T),
    "notification_edit": Spec("GET", T, scoped=True, kwargs={"endpoint_id": "endpoint"}),
    "notification_toggle": Spec("POST", T, scoped=True, kwargs={"endpoint_id": "endpoint"}),
    "notification_delete": Spec("POST", T, scoped=True, kwargs={"endpoint_id": "endpoint"}),
    "notification_test": Spec("POST", T, scoped=True, kwargs={"endpoint_id": "endpoint"}),
    "notification_rotate_secret": Spec("POST", T, scoped=True, kwargs={"endpoint_id": "endpoint"}),
    "notification_delivery_retry": Spec("POST", T, scoped=True, kwargs={"delivery_id": "delivery"}),
    "notification_email": Spec("GET", T),
    "draft_create": Spec("GET", T),
    "draft": Spec("GET", V, scoped=True, kwargs=DRAFT),
    "draft_stream": Spec("GET", V, scoped=True, kwargs=DRAFT),
    "draft_apply": Spec("POST", T, scoped=True, kwargs=DRAFT),
    "draft_discard": Spec("POST", T, scoped=True, kwargs=DRAFT),
}


def console_url_names() -> set[str]:
    def walk(patterns: list[Any], namespace: str | None) -> set[str]:
        names: set[str] = set()
        for entry in patterns:
            if isinstance(entry, URLResolver):
                names |= walk(entry.url_patterns, entry.namespace or namespace)
            elif isinstance(entry, URLPattern) and namespace == "console" and entry.name:
                names.add(entry.name)
        return names

    return walk(get_resolver().url_patterns, None)


def test_every_console_url_has_an_entry():
    names = console_url_names()
    assert names - set(SPECS) == set(), "new console URLs need an entry in SPECS"
    assert set(SPECS) - names == set(), "SPECS names URLs that no longer exist"


def expected(spec: Spec, persona: str) -> str:
    if spec.public:
        return OK
    if persona == "anonymous":
        return LOGIN
    if persona == "outsider":
        if spec.scoped:
            # The outsider's own role (owner of their organization) passes the role check;
            # the object is not in their organization.
            return NOT_FOUND
        return OK
    if spec.capability is None or spec.capability in ROLE_CAPABILITIES[persona]:
        return OK
    return FORBIDDEN


@pytest.fixture
def world(org, other_org, issued, tool, per_agent_tool, operator):
    agent = issued.agent
    second = factories.make_agent(org, "Second-Agent").agent
    pending = grant_request(agent=second, tool=tool, reason="Need it for the weekly report.")
    approved = grant_assign(agent=agent, tool=tool, actor=operator)
    suggestion = tool_suggest(agent=agent, name="Notion", url="https://notion.so", reason="Docs live there.")
    guide = guide_suggest(agent=agent, tool=tool, learned="Team key is PLATFORM.", why="Saves time.")
    owner_of_org = factories.make_member(org, Role.OWNER)
    endpoint = endpoint_create(
        org=org,
        actor=owner_of_org,
        name="Team Slack",
        kind="slack",
        url="https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX",
        events=["access.requested"],
    )
    delivery = Delivery.objects.create(
        org=org,
        endpoint=endpoint,
        channel=endpoint.kind,
        event=Event.ACCESS_REQUESTED,
        payload={"subject": {"agent": agent.name, "tool": tool.name}, "link": "https://agentkey.example/"},
        status=DeliveryStatus.DEAD,
        attempts=1,
        last_status_code=410,
        last_error="The endpoint answered HTTP 410; not retried.",
    )
    draft = GuideDraft.objects.create(
        org=org,
        tool=tool,
        source_url="https://docs.example.com/api/auth",
        model="offline",
        status=DraftStatus.DONE,
        content="## Base URL\n\n- `https://api.example.com/v1`\n",
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )
    invitation = invitation_create(
        org=org, email="new.person@example.com", role="auditor", actor=owner_of_org
    )
    return {
        "org": org,
        "other_org": other_org,
        "agent": agent.id,
        "tool": tool.id,
        "pending": pending.id,
        "approved": approved.id,
        "suggestion": suggestion.suggestion.id,
        "guide_suggestion": guide.suggestion.id,
        "endpoint": endpoint.id,
        "delivery": delivery.id,
        "draft": draft.id,
        "invitation": invitation.invitation.id,
        "alert": canary_alert(org, agent).id,
        "token": invitation.token,
        "member": factories.make_member(org, Role.APPROVER).pk,
        "version": 1,
    }


def canary_alert(org: Any, agent: Any) -> Any:
    from grants.anomalies import canary_requested

    decoy = factories.make_tool(org, "Decoy", is_canary=True)
    alert = canary_requested(agent=agent, tool=decoy, via="request")
    assert alert is not None
    return alert


def client_for(persona: str, world: dict[str, Any]) -> Client:
    client = Client()
    if persona == "anonymous":
        return client
    if persona == "outsider":
        membership = factories.make_member(world["other_org"], Role.OWNER)
    else:
        membership = factories.make_member(world["org"], Role(persona))
    client.force_login(membership.user)
    return client


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("name", sorted(SPECS))
def test_permission_matrix(name, persona, world):
    spec = SPECS[name]
    url = reverse(f"console:{name}", kwargs={k: world[v] for k, v in spec.kwargs.items()})
    client = client_for(persona, world)
    response = client.post(url, {}) if spec.method == "POST" else client.get(url)
    outcome = expected(spec, persona)
    status = response.status_code
    if outcome == LOGIN:
        assert status == 302
        assert response["Location"].startswith("/accounts/login/"), response["Location"]
    elif outcome == FORBIDDEN:
        assert status == 403, (status, response.get("Location"))
    elif outcome == NOT_FOUND:
        assert status == 404, (status, response.get("Location"))
    else:
        assert status in (200, 302), status
        if status == 302:
            assert not response["Location"].startswith("/accounts/login/")
