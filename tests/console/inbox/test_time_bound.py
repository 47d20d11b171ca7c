"""Time-bound access in the console: the countdown, extending, the approve choices under a maximum,
and the organization's access policy on the Members page."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Role
from accounts.services import org_set_max_grant_duration
from audit.models import Action
from grants.models import AccessGrant
from grants.services import grant_assign
from tests import factories
from tests.console.inbox.conftest import console_for

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


@pytest.fixture
def frozen(time_machine):
    start = timezone.now().replace(microsecond=0)
    time_machine.move_to(start, tick=False)
    return start


@pytest.fixture
def ending(agent, tool, operator, frozen) -> AccessGrant:
    return grant_assign(
        agent=agent, tool=tool, actor=operator, expires_at=frozen + 3 * HOUR + timedelta(minutes=12)
    )


def _item(html: str, grant: AccessGrant) -> str:
    start = html.index(f'id="time-bound-{grant.id}"')
    return html[start : html.index("</li>", start)]


def test_the_inbox_shows_time_bound_access_with_a_server_rendered_countdown(owner_console, ending, frozen):
    response = owner_console.get("/inbox/")
    html = response.content.decode()
    item = _item(html, ending)
    assert "Onboarding-Agent → Linear" in item
    assert f'data-expires="{ending.expires_at:%Y-%m-%dT%H:%M:%S}+00:00">3 h 12 min</strong>' in item
    assert 'role="timer"' in item
    assert f"{ending.expires_at:%Y-%m-%d %H:%M} UTC" in item


def test_the_countdown_script_is_a_static_file_loaded_with_the_csp_nonce(owner_console, ending):
    response = owner_console.get("/inbox/")
    html = response.content.decode()
    [tag] = re.findall(r"<script[^>]*countdown\.js[^>]*>", html)
    nonce = re.search(r'nonce="([^"]+)"', tag)
    assert nonce, tag
    assert f"'nonce-{nonce.group(1)}'" in response["Content-Security-Policy"]
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "no inline scripts"
    assert " style=" not in _item(html, ending), "no inline styles"


def test_no_expiry_and_expired_access_are_not_listed(
    owner_console, org, agent, tool, operator, frozen, time_machine
):
    grant_assign(agent=agent, tool=tool, actor=operator)
    other = factories.make_agent(org, "Short-Agent").agent
    grant_assign(agent=other, tool=tool, actor=operator, expires_at=frozen + HOUR)
    time_machine.move_to(frozen + HOUR, tick=False)
    html = owner_console.get("/inbox/").content.decode()
    assert "No approved access with an expiry." in html


def test_soonest_end_comes_first(owner_console, org, tool, operator, frozen):
    late = grant_assign(
        agent=factories.make_agent(org, "Late").agent, tool=tool, actor=operator, expires_at=frozen + 2 * DAY
    )
    soon = grant_assign(
        agent=factories.make_agent(org, "Soon").agent, tool=tool, actor=operator, expires_at=frozen + HOUR
    )
    html = owner_console.get("/inbox/").content.decode()
    assert html.index(f"time-bound-{soon.id}") < html.index(f"time-bound-{late.id}")


def test_extending_without_javascript_redirects_with_a_message_and_is_audited(
    owner, owner_console, ending, audit_log
):
    before = ending.expires_at
    audit_log.mark()
    response = owner_console.post(f"/grants/{ending.id}/extend", {"by": "1d"})
    assert response.status_code == 302
    assert response["Location"] == "/inbox/"
    ending.refresh_from_db()
    assert ending.expires_at == before + DAY
    [event] = audit_log.new()
    assert (event.action, event.actor_label) == (Action.GRANT_EXTENDED, owner.user.email)
    html = owner_console.get("/inbox/").content.decode()
    assert (
        f"Onboarding-Agent → Linear: extended by 1 d by you, until {ending.expires_at:%Y-%m-%d %H:%M} UTC."
        in html
    )


def test_extending_with_htmx_replaces_the_item_with_the_new_countdown(approver, ending):
    client = console_for(approver)
    response = client.post(f"/grants/{ending.id}/extend", {"by": "8h"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith(f'<li class="panel inbox-item" id="time-bound-{ending.id}"')
    assert ">11 h 12 min</strong>" in html
    assert "Extended by 8 h." in html


def test_extend_choices_stop_at_the_maximum_and_a_forged_choice_is_refused(
    org, owner, owner_console, ending, audit_log
):
    org_set_max_grant_duration(org=org, actor=owner, max_grant_duration=DAY)
    item = _item(owner_console.get("/inbox/").content.decode(), ending)
    offered = re.findall(r'<option value="(\w+)">', item)
    assert offered == ["1h", "8h"], "3 h 12 min left of a 1 d maximum leaves room for 20 h 48 min"
    audit_log.mark()
    response = owner_console.post(f"/grants/{ending.id}/extend", {"by": "1d"}, **HTMX)
    html = response.content.decode()
    assert "Extending by 1 d would leave more than 1 d of access." in html
    assert f'id="time-bound-{ending.id}"' in html, "the item stays, with the problem next to it"
    assert audit_log.actions() == []


@pytest.mark.parametrize("choice", ["", "2h", "forever"])
def test_an_unknown_extension_is_refused_with_a_hint(owner_console, ending, audit_log, choice):
    audit_log.mark()
    owner_console.post(f"/grants/{ending.id}/extend", {"by": choice})
    assert audit_log.actions() == []
    assert "Choose how long to extend the access by." in owner_console.get("/inbox/").content.decode()


def test_extending_access_that_expired_meanwhile_settles_the_item(owner_console, ending, time_machine):
    time_machine.move_to(ending.expires_at, tick=False)
    html = owner_console.post(f"/grants/{ending.id}/extend", {"by": "1h"}, **HTMX).content.decode()
    assert "Not changed" in html
    assert "This access is expired, not approved." in html


def test_auditors_see_the_countdown_but_no_extend_form(auditor, ending):
    html = console_for(auditor).get("/inbox/").content.decode()
    item = _item(html, ending)
    assert "3 h 12 min" in item
    assert "/extend" not in item
    assert console_for(auditor).post(f"/grants/{ending.id}/extend", {"by": "1h"}).status_code == 403


def test_another_organizations_grant_is_not_found(other_org, ending):
    outsider = console_for(factories.make_member(other_org, Role.OWNER))
    assert outsider.post(f"/grants/{ending.id}/extend", {"by": "1h"}).status_code == 404


# --- approve choices under a maximum ---------------------------------------------------------------


def _approve_options(html: str) -> list[str]:
    start = html.index('id="duration-')
    return re.findall(r'<option value="(\w+)"', html[start : html.index("</select>", start)])


def test_with_a_maximum_approve_offers_only_what_fits_and_no_expiry_is_gone(
    org, owner, owner_console, tool, make_request
):
    org_set_max_grant_duration(org=org, actor=owner, max_grant_duration=DAY)
    make_request(tool)
    html = owner_console.get("/inbox/").content.decode()
    assert _approve_options(html) == ["1h", "8h", "1d"]
    assert "Access in Acme lasts at most 1 d" in html
    bulk = html[html.index('id="bulk-duration"') : html.index("</select>", html.index('id="bulk-duration"'))]
    assert re.findall(r'<option value="(\w+)"', bulk) == ["1h", "8h", "1d", "requested"]
    assert "else 1 d, the maximum" in bulk


def test_as_requested_says_when_the_maximum_shortens_it(
    org, owner, owner_console, tool, make_request, frozen
):
    org_set_max_grant_duration(org=org, actor=owner, max_grant_duration=DAY)
    grant = make_request(tool, duration=7 * DAY)
    html = owner_console.get("/inbox/").content.decode()
    assert "1 d, the maximum (asked for 7 d)" in html
    owner_console.post(f"/grants/{grant.id}/approve", {"duration": "requested"})
    grant.refresh_from_db()
    assert grant.expires_at == frozen + DAY
    assert (
        "approved for 1 d (the maximum; asked for 7 d) by you."
        in owner_console.get("/inbox/").content.decode()
    )


def test_a_forged_no_expiry_under_a_maximum_is_refused_in_place(
    org, owner, owner_console, tool, make_request
):
    org_set_max_grant_duration(org=org, actor=owner, max_grant_duration=DAY)
    grant = make_request(tool)
    html = owner_console.post(f"/grants/{grant.id}/approve", {"duration": "none"}, **HTMX).content.decode()
    assert "This organization allows access for at most 1 d." in html
    assert f'id="grant-{grant.id}"' in html


# --- the access policy on the Members page ----------------------------------------------------------


def test_an_admin_sets_the_maximum_on_the_members_page_and_it_is_audited(org, admin_member, audit_log):
    client = console_for(admin_member)
    page = client.get("/members/").content.decode()
    assert 'id="access-policy"' in page
    assert 'name="max_grant_duration"' in page
    audit_log.mark()
    response = client.post("/orgs/settings", {"max_grant_duration": "7d"})
    assert response.status_code == 302
    org.refresh_from_db()
    assert org.max_grant_duration == 7 * DAY
    [event] = audit_log.new()
    assert event.action == Action.ORG_SETTINGS_CHANGED
    page = client.get("/members/").content.decode()
    assert "Access in Acme now lasts at most 7 d." in page
    assert "<strong>7 d</strong>" in page
    client.post("/orgs/settings", {"max_grant_duration": ""})
    org.refresh_from_db()
    assert org.max_grant_duration is None


def test_an_unknown_maximum_is_refused_with_a_hint(org, owner, audit_log):
    client = console_for(owner)
    audit_log.mark()
    client.post("/orgs/settings", {"max_grant_duration": "90d"})
    org.refresh_from_db()
    assert org.max_grant_duration is None
    assert audit_log.actions() == []
    assert "Choose a maximum grant duration from the list" in client.get("/members/").content.decode()


def test_approvers_see_the_policy_but_cannot_change_it(org, approver):
    client = console_for(approver)
    page = client.get("/members/").content.decode()
    assert "Owners and admins can change it." in page
    assert 'name="max_grant_duration"' not in page
    assert client.post("/orgs/settings", {"max_grant_duration": "1h"}).status_code == 403
    org.refresh_from_db()
    assert org.max_grant_duration is None
