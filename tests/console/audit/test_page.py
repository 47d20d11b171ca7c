"""The audit log page: who may read it, what it shows, and that it stays cheap."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Role
from audit.models import Action, AuditEvent
from tests import factories
from tests.console.audit.conftest import console_for, org_ids, shown_ids

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN, Role.AUDITOR])
def test_owners_admins_and_auditors_read_the_log(org, role, tool, agent):
    member = factories.make_member(org, role)
    response = console_for(member).get("/audit/")
    assert response.status_code == 200
    assert shown_ids(response) == org_ids(org)[:50]
    page = response.content.decode()
    assert "Tool created" in page, "actions are shown by their label"
    assert "tool.created" in page, "and by their stable code"
    assert "Linear" in page
    assert "Onboarding-Agent" in page


def test_an_approver_gets_403_on_the_page_and_the_export(approver, tool):
    client = console_for(approver)
    assert client.get("/audit/").status_code == 403
    assert client.get("/audit/export?format=csv").status_code == 403
    assert client.get("/audit/export?format=jsonl").status_code == 403


def test_the_nav_offers_the_log_only_to_roles_that_may_read_it(approver, auditor):
    assert 'href="/audit/"' not in console_for(approver).get("/agents/").content.decode()
    assert 'href="/audit/"' in console_for(auditor).get("/agents/").content.decode()


def test_anonymous_people_are_sent_to_sign_in(client):
    response = client.get("/audit/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]
    assert client.get("/audit/export").status_code == 302


def test_another_organizations_events_never_appear(org, other_org, auditor, agent, tool, stranger):
    stranger_tool = factories.make_tool(other_org, "Globex Jira")
    ours = set(org_ids(org))
    theirs = set(org_ids(other_org))
    assert ours
    assert theirs
    client = console_for(auditor)
    assert set(shown_ids(client.get("/audit/"))) <= ours
    # Their agent, tool and actor ids in the query string change nothing: the organization is ours.
    for query in (
        f"agent={stranger.agent.id}",
        f"tool={stranger_tool.id}",
        f"actor={stranger.agent.id}",
        f"agent={stranger.agent.id}&tool={stranger_tool.id}",
    ):
        response = client.get(f"/audit/?{query}")
        assert shown_ids(response) == [], query
        assert "Globex" not in response.content.decode()
        assert "Stranger-Agent (not in this organization now)" not in response.content.decode()


def test_a_member_of_another_organization_sees_only_theirs(org, other_org, tool, agent):
    stranger_auditor = factories.make_member(other_org, Role.AUDITOR)
    response = console_for(stranger_auditor).get(f"/audit/?agent={agent.id}")
    assert shown_ids(response) == []
    assert set(shown_ids(console_for(stranger_auditor).get("/audit/"))) == set(org_ids(other_org))


def test_metadata_is_summarised_and_escaped(org, auditor, agent, record):
    record(Action.AGENT_SUSPENDED, auditor, agent, reason='<script>alert("x")</script>', note="a" * 300)
    page = console_for(auditor).get("/audit/").content.decode()
    assert '<script>alert("x")</script>' not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "a" * 300 not in page.split("<details")[0], "the summary is short"
    assert "All details" in page


def test_labels_say_who_did_what_to_what(org, owner, agent, tool, record, system):
    record(Action.GRANT_REVOKED, owner, tool, tool_name="Linear", reason="Left the team")
    record(Action.TOOL_UPDATED, system, tool, fields=["name", "url"])
    page = console_for(owner).get("/audit/").content.decode()
    assert owner.user.email in page
    assert "Human" in page
    assert "Access revoked" in page
    assert "nightly job" in page
    assert "System" in page
    assert "name, url" in page, "a list of names reads as a list"
    assert f'href="/tools/{tool.id}/"' in page, "a tool target links to the tool"
    assert f'href="/agents/{agent.id}/"' in page, "an agent actor links to the agent"


def test_the_page_makes_the_same_number_of_queries_however_many_events(org, owner, agent, tool, record):
    client = console_for(owner)
    for query in ("", f"?agent={agent.id}&from=2000-01-01&to=2999-12-31", "?action=tool.updated"):
        client.get(f"/audit/{query}")  # warm per-process caches
        with CaptureQueriesContext(connection) as few:
            assert client.get(f"/audit/{query}").status_code == 200
        for n in range(80):
            record(Action.TOOL_UPDATED, agent, tool, fields=[f"f{n}"])
        with CaptureQueriesContext(connection) as many:
            assert client.get(f"/audit/{query}").status_code == 200
        assert len(many) == len(few), [q["sql"] for q in many.captured_queries]


def test_the_page_never_counts_or_offsets(org, owner, tool):
    with CaptureQueriesContext(connection) as queries:
        console_for(owner).get("/audit/?before=999999")
    audit_sql = [q["sql"] for q in queries.captured_queries if "audit_auditevent" in q["sql"]]
    assert audit_sql
    assert not any("COUNT(" in sql.upper() or "OFFSET" in sql.upper() for sql in audit_sql)


def test_an_htmx_request_gets_the_results_only(owner, tool):
    response = console_for(owner).get("/audit/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    page = response.content.decode()
    assert page.lstrip().startswith('<section id="audit-results"')
    assert "<html" not in page
    assert "HX-Request" in response["Vary"]


def test_the_filters_form_works_without_javascript(owner, tool):
    page = console_for(owner).get("/audit/").content.decode()
    assert '<form method="get" action="/audit/"' in page
    for name in ("actor", "action", "agent", "tool", "from", "to"):
        assert f'name="{name}"' in page
        assert f'<label for="f-{name}"' in page
    assert ">Apply filters</button>" in page


def test_events_without_an_organization_are_not_shown(org, owner, tool):
    AuditEvent.objects.create(org_id=None, actor_type="system", action="vault.master_key_rotated")
    assert shown_ids(console_for(owner).get("/audit/")) == org_ids(org)[:50]


def test_an_htmx_request_with_a_bad_filter_shows_the_error_in_the_results(owner, tool):
    response = console_for(owner).get("/audit/?agent=nope", headers={"HX-Request": "true"})
    page = response.content.decode()
    assert 'role="alert"' in page
    assert "Agent:" in page
