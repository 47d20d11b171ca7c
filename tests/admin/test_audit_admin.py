"""The audit log in the operator console is strictly read-only."""

from __future__ import annotations

import pytest

from accounts.models import Role
from audit.models import Action, ActorType, AuditEvent
from audit.services import SystemActor, audit_record
from tests.admin.conftest import AUDIT, html

pytestmark = pytest.mark.django_db


@pytest.fixture
def event(org):
    return audit_record(action=Action.GRANT_APPROVED, actor=SystemActor(label="nightly job"), org_id=org.id)


def test_the_audit_admin_refuses_to_add_change_or_delete(event, console, audit_log):
    assert console.get(f"{AUDIT}add/").status_code == 403
    assert (
        console.post(f"{AUDIT}add/", {"action": "grant.approved", "actor_type": "system"}).status_code == 403
    )
    assert console.post(f"{AUDIT}{event.pk}/change/", {"actor_label": "someone else"}).status_code == 403
    assert console.get(f"{AUDIT}{event.pk}/delete/").status_code == 403
    assert console.post(f"{AUDIT}{event.pk}/delete/", {"post": "yes"}).status_code == 403

    page = console.get(f"{AUDIT}{event.pk}/change/")
    assert page.status_code == 200
    assert 'name="actor_label"' not in html(page)
    assert "Access approved" in html(page)
    assert "delete_selected" not in html(console.get(AUDIT))
    assert audit_log.actions() == []
    assert AuditEvent.objects.get(pk=event.pk).actor_label == "nightly job"


def test_the_changelist_renders_200_events_in_constant_queries(org, console, django_assert_max_num_queries):
    for n in range(200):
        audit_record(
            action=Action.CREDENTIAL_VENDED if n % 2 else Action.GRANT_REQUESTED,
            actor=SystemActor(label=f"job {n}"),
            org_id=org.id,
        )

    with django_assert_max_num_queries(8):
        response = console.get(AUDIT)

    assert response.status_code == 200
    page = html(response)
    assert page.count('class="field-actor_label"') == 100  # one page, newest first
    assert page.count("Credential fetched (credential.vended)") == 50
    assert "job 199" in page
    assert "job 99<" not in page


def test_the_changelist_filters_by_action_and_actor_type(event, org, console):
    audit_record(action=Action.AGENT_CREATED, actor=SystemActor(label="creator"), org_id=org.id)

    by_action = html(console.get(f"{AUDIT}?action=grant.approved"))
    assert "nightly job" in by_action
    assert "creator" not in by_action
    assert "nightly job" not in html(console.get(f"{AUDIT}?actor_type__exact={ActorType.HUMAN}"))


def test_only_superusers_read_the_log_here(event, org, staff_member):
    # audit is a leaf and cannot scope events to an organization; auditors use the dashboard.
    auditor = staff_member((org, Role.AUDITOR))
    assert auditor.get(AUDIT).status_code == 403
    assert auditor.get(f"{AUDIT}{event.pk}/change/").status_code == 403
