"""Approving and denying access requests from the inbox: one at a time, in bulk, with and without htmx."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import Action, AuditEvent
from grants.models import AccessGrant, GrantStatus
from tests import factories
from tests.support.http import access_of

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def messages_on(client) -> str:
    return str(client.get("/inbox/").content.decode())


def approve(client, grant, duration: str = "8h", **extra):
    return client.post(f"/grants/{grant.id}/approve", {"duration": duration}, **extra)


@pytest.mark.parametrize(
    ("choice", "duration", "label"),
    [
        ("1h", timedelta(hours=1), "1 h"),
        ("8h", timedelta(hours=8), "8 h"),
        ("1d", timedelta(days=1), "1 d"),
        ("7d", timedelta(days=7), "7 d"),
        ("30d", timedelta(days=30), "30 d"),
    ],
)
def test_approve_for_each_duration(
    owner, owner_console, tool, agent, make_request, audit_log, time_machine, choice, duration, label
):
    time_machine.move_to(timezone.now(), tick=False)
    grant = make_request(tool, agent=agent)
    audit_log.mark()
    response = approve(owner_console, grant, choice)
    assert response.status_code == 302
    assert response["Location"] == "/inbox/"
    grant.refresh_from_db()
    assert grant.status == GrantStatus.APPROVED
    assert grant.expires_at == timezone.now() + duration
    assert grant.decided_by == owner.user
    [event] = audit_log.new()
    assert event.action == Action.GRANT_APPROVED
    assert (event.actor_type, event.actor_id, event.actor_label) == (
        "human",
        str(owner.user.pk),
        owner.user.email,
    )
    assert event.metadata["expires_at"] == grant.expires_at.isoformat()
    assert f"Onboarding-Agent → Linear: approved for {label} by you." in messages_on(owner_console)


def test_approve_as_requested_applies_the_agents_duration(
    owner_console, tool, agent, make_request, audit_log, time_machine
):
    time_machine.move_to(timezone.now(), tick=False)
    grant = make_request(tool, agent=agent, duration=timedelta(hours=2))
    audit_log.mark()
    approve(owner_console, grant, "requested")
    grant.refresh_from_db()
    assert grant.status == GrantStatus.APPROVED
    assert grant.expires_at == timezone.now() + timedelta(hours=2)
    assert audit_log.actions() == [Action.GRANT_APPROVED]
    assert "approved for 2 h (as requested) by you." in messages_on(owner_console)


def test_approve_with_no_expiry(owner_console, tool, make_request, audit_log, api, agent):
    grant = make_request(tool, agent=agent)
    audit_log.mark()
    approve(owner_console, grant, "none")
    grant.refresh_from_db()
    assert grant.status == GrantStatus.APPROVED
    assert grant.expires_at is None
    assert audit_log.actions() == [Action.GRANT_APPROVED]
    assert "approved with no expiry by you." in messages_on(owner_console)
    assert api.credentials(tool.id).status_code == 200


@pytest.mark.parametrize("choice", ["2h", "", "forever"])
def test_an_unknown_span_is_refused(owner_console, tool, make_request, audit_log, choice):
    grant = make_request(tool, duration=timedelta(hours=2))
    audit_log.mark()
    approve(owner_console, grant, choice)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.PENDING
    assert audit_log.actions() == []
    assert "Choose how long the access lasts." in messages_on(owner_console)


@pytest.mark.parametrize("choice", ["none", "8h"])
def test_an_approval_cannot_be_longer_than_the_agent_asked_for(
    owner_console, tool, make_request, audit_log, choice
):
    grant = make_request(tool, duration=timedelta(hours=2))
    audit_log.mark()
    approve(owner_console, grant, choice)
    grant.refresh_from_db()
    assert (grant.status, grant.expires_at) == (GrantStatus.PENDING, None)
    assert audit_log.actions() == []
    html = messages_on(owner_console)
    assert "The agent asked for 2 h; an approval cannot give more than it asked for." in html
    assert "Approve for 2 h or less." in html


def test_an_approval_may_shorten_what_the_agent_asked_for(owner_console, tool, make_request, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    grant = make_request(tool, duration=timedelta(days=7))
    approve(owner_console, grant, "1h")
    grant.refresh_from_db()
    assert (grant.status, grant.expires_at) == (GrantStatus.APPROVED, timezone.now() + timedelta(hours=1))


def test_as_requested_is_refused_when_the_agent_asked_for_no_duration(
    owner_console, tool, make_request, audit_log
):
    grant = make_request(tool)
    audit_log.mark()
    approve(owner_console, grant, "requested")
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.PENDING
    assert audit_log.actions() == []
    assert "Choose how long the access lasts." in messages_on(owner_console)


# --- per-agent tools -----------------------------------------------------------------------------


def test_a_per_agent_approval_needs_the_credential_which_the_agent_then_vends(
    owner_console, per_agent_tool, agent, api, make_request, audit_log
):
    grant = make_request(per_agent_tool, agent=agent)
    html = messages_on(owner_console)
    assert f'id="credential-{grant.id}"' in html
    assert 'type="password"' in html

    audit_log.mark()
    approve(owner_console, grant, "8h")
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.PENDING
    assert audit_log.actions() == []
    assert "This tool uses a credential per agent." in messages_on(owner_console)

    credential = factories.new_credential("ghp")
    response = owner_console.post(f"/grants/{grant.id}/approve", {"duration": "8h", "credential": credential})
    assert response.status_code == 302
    assert audit_log.actions() == [Action.GRANT_APPROVED]
    grant.refresh_from_db()
    assert grant.status == GrantStatus.APPROVED
    assert grant.secret_id is not None
    assert credential not in messages_on(owner_console)
    vend = api.credentials(per_agent_tool.id)
    assert vend.status_code == 200
    assert vend.json()["credential"] == credential


def test_a_per_agent_credential_is_refused_over_htmx_without_echoing_it(
    owner_console, per_agent_tool, make_request
):
    grant = make_request(per_agent_tool)
    response = approve(owner_console, grant, "none", **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert f'id="grant-{grant.id}"' in html, "the item stays, with the problem next to it"
    assert "This tool uses a credential per agent." in html
    assert 'role="alert"' in html


@pytest.mark.parametrize("blank", ["   ", "\u2003\u00a0"])
def test_a_blank_per_agent_credential_is_refused(
    owner_console, per_agent_tool, make_request, audit_log, blank
):
    grant = make_request(per_agent_tool)
    audit_log.mark()
    response = owner_console.post(f"/grants/{grant.id}/approve", {"duration": "8h", "credential": blank})
    assert response.status_code == 302
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.PENDING
    assert audit_log.actions() == []


def test_a_credential_store_failure_is_a_message_not_an_error_page(
    owner_console, per_agent_tool, make_request, audit_log, monkeypatch
):
    import grants.services.decisions
    from agentkey.core.errors import CryptoError

    def broken(**_: object) -> None:
        raise CryptoError("no usable master key")

    monkeypatch.setattr(grants.services.decisions, "secret_create", broken)
    grant = make_request(per_agent_tool)
    audit_log.mark()
    credential = factories.new_credential("ghp")
    response = owner_console.post(
        f"/grants/{grant.id}/approve", {"duration": "8h", "credential": credential}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert "The credential store refused this" in response.content.decode()
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.PENDING
    assert audit_log.actions() == []


# --- deny ----------------------------------------------------------------------------------------


def test_deny_with_a_reason_the_agent_then_sees(owner_console, tool, agent, api, make_request, audit_log):
    grant = make_request(tool, agent=agent)
    audit_log.mark()
    response = owner_console.post(
        f"/grants/{grant.id}/deny", {"reason": "Use the staging workspace instead."}
    )
    assert response.status_code == 302
    grant.refresh_from_db()
    assert grant.status == GrantStatus.DENIED
    assert audit_log.actions() == [Action.GRANT_DENIED]
    assert "Onboarding-Agent → Linear: denied by you." in messages_on(owner_console)
    listed = api.tools().json()["tools"]
    [linear] = [t for t in listed if t["id"] == str(tool.id)]
    assert linear["your_access"] == "denied"
    assert linear["denial_reason"] == "Use the staging workspace instead."


@pytest.mark.parametrize("reason", ["", "no", "   x  ", "x" * 501])
def test_deny_needs_a_reason_of_5_to_500_characters(owner_console, tool, make_request, audit_log, reason):
    grant = make_request(tool)
    audit_log.mark()
    owner_console.post(f"/grants/{grant.id}/deny", {"reason": reason})
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.PENDING
    assert audit_log.actions() == []
    assert "A denial needs a reason." in messages_on(owner_console)


# --- htmx ----------------------------------------------------------------------------------------


def test_htmx_approve_replaces_the_item_and_refreshes_the_count(owner_console, tool, make_request, audit_log):
    grant = make_request(tool)
    make_request(tool)  # still waiting afterwards
    audit_log.mark()
    response = approve(owner_console, grant, "8h", **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert f'<li class="panel inbox-item inbox-settled ok" id="grant-{grant.id}">' in html
    assert "approved for 8 h by you." in html
    assert '<span id="inbox-count" hx-swap-oob="innerHTML">1</span>' in html
    assert "<html" not in html, "a partial, not a page"
    assert audit_log.actions() == [Action.GRANT_APPROVED]


def test_htmx_deny_replaces_the_item(owner_console, tool, make_request):
    grant = make_request(tool)
    response = owner_console.post(f"/grants/{grant.id}/deny", {"reason": "Not for this project."}, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "denied by you." in html
    assert '<span id="inbox-count" hx-swap-oob="innerHTML"></span>' in html, "zero shows as empty"


def test_htmx_deny_without_reason_keeps_the_item_with_the_problem(owner_console, tool, make_request):
    grant = make_request(tool)
    response = owner_console.post(f"/grants/{grant.id}/deny", {"reason": ""}, **HTMX)
    html = response.content.decode()
    assert f'<li class="panel inbox-item" id="grant-{grant.id}">' in html
    assert "A denial needs a reason." in html
    assert AccessGrant.objects.get(pk=grant.pk).status == GrantStatus.PENDING


def test_the_inbox_forms_carry_htmx_and_plain_post_attributes(owner_console, tool, make_request):
    grant = make_request(tool)
    html = messages_on(owner_console)
    assert f'action="/grants/{grant.id}/approve"' in html
    assert f'hx-post="/grants/{grant.id}/approve" hx-target="#grant-{grant.id}" hx-swap="outerHTML"' in html
    assert f'action="/grants/{grant.id}/deny"' in html


# --- decided elsewhere ---------------------------------------------------------------------------


def test_deciding_twice_shows_the_conflict_not_an_error_page(owner_console, admin_member, tool, make_request):
    from tests.console.inbox.conftest import console_for

    grant = make_request(tool)
    other = console_for(admin_member)
    assert approve(other, grant, "1h").status_code == 302
    events = AuditEvent.objects.count()

    response = approve(owner_console, grant, "8h")
    assert response.status_code == 302
    assert "This request is approved, not pending." in messages_on(owner_console)

    response = owner_console.post(f"/grants/{grant.id}/deny", {"reason": "Too late for this one."}, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert "This request is approved, not pending." in html
    assert "inbox-settled refused" in html
    assert AuditEvent.objects.count() == events
    grant.refresh_from_db()
    assert grant.decided_by == admin_member.user


# --- bulk ----------------------------------------------------------------------------------------


def test_bulk_approve_approves_shared_tools_and_skips_per_agent_ones(
    owner_console, tool, per_agent_tool, make_request, audit_log, time_machine
):
    time_machine.move_to(timezone.now(), tick=False)
    first = make_request(tool)
    second = make_request(tool, duration=timedelta(hours=2))
    per_agent = make_request(per_agent_tool)
    untouched = make_request(tool)
    audit_log.mark()
    response = owner_console.post(
        "/grants/approve", {"grant": [first.id, second.id, per_agent.id], "duration": "1d"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/inbox/"
    assert audit_log.actions() == [Action.GRANT_APPROVED, Action.GRANT_APPROVED]
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.expires_at) == (GrantStatus.APPROVED, timezone.now() + timedelta(days=1))
    assert (second.status, second.expires_at) == (
        GrantStatus.APPROVED,
        timezone.now() + timedelta(hours=2),
    ), "never longer than the agent asked for"
    assert AccessGrant.objects.get(pk=per_agent.pk).status == GrantStatus.PENDING
    assert AccessGrant.objects.get(pk=untouched.pk).status == GrantStatus.PENDING
    html = messages_on(owner_console)
    assert "Approved 2 requests for 1 d" in html
    assert "Skipped 1 request for per-agent tools" in html
    assert f"{per_agent.agent.name} → GitHub" in html


def test_bulk_approve_as_requested(owner_console, tool, make_request, audit_log, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    asked = make_request(tool, duration=timedelta(hours=2))
    unasked = make_request(tool)
    owner_console.post("/grants/approve", {"grant": [asked.id, unasked.id], "duration": "requested"})
    asked.refresh_from_db()
    unasked.refresh_from_db()
    assert asked.expires_at == timezone.now() + timedelta(hours=2)
    assert unasked.status == GrantStatus.APPROVED
    assert unasked.expires_at is None


def test_bulk_approve_reports_what_it_could_not_do(
    owner_console, tool, make_request, other_org, audit_log, admin_member
):
    from tests.console.inbox.conftest import console_for

    done_elsewhere = make_request(tool)
    approve(console_for(admin_member), done_elsewhere, "1h")
    foreign = make_request(factories.make_tool(other_org), agent=factories.make_agent(other_org).agent)
    audit_log.mark()
    owner_console.post(
        "/grants/approve", {"grant": [done_elsewhere.id, foreign.id, "not-a-uuid"], "duration": "8h"}
    )
    assert audit_log.actions() == []
    assert AccessGrant.objects.get(pk=foreign.pk).status == GrantStatus.PENDING
    html = messages_on(owner_console)
    assert "This request is approved, not pending." in html
    assert "1 selected request was not found." in html


def test_bulk_approve_needs_a_selection_and_a_known_duration(owner_console, tool, make_request, audit_log):
    grant = make_request(tool)
    audit_log.mark()
    owner_console.post("/grants/approve", {"duration": "8h"})
    assert "Select the requests to approve first." in messages_on(owner_console)
    owner_console.post("/grants/approve", {"grant": [grant.id], "duration": "none"})
    assert "Choose how long the access lasts." in messages_on(owner_console)
    assert audit_log.actions() == []


def test_bulk_approve_over_htmx_redirects_the_browser(owner_console, tool, make_request):
    grant = make_request(tool)
    response = owner_console.post("/grants/approve", {"grant": [grant.id], "duration": "8h"}, **HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/inbox/"


def test_the_agent_journey_request_approve_vend(owner_console, tool, api, agent):
    assert api.request_access(tool.id, reason="Filing the release bugs.").status_code == 201
    grant = AccessGrant.objects.get(agent=agent, tool=tool)
    assert "Filing the release bugs." in messages_on(owner_console)
    approve(owner_console, grant, "8h", **HTMX)
    assert access_of(api.tools(), tool.id) == "approved"
    assert api.credentials(tool.id).status_code == 200
