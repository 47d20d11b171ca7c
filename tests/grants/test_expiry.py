"""Expired access: refused at once by the vend, then tidied up by the beat job."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import Action
from catalog.services import tool_rotate_credential
from grants.models import AccessGrant, GrantStatus
from grants.services import grant_assign, grants_expire_due
from grants.tasks import expire_due_grants
from tests.factories import new_credential
from tests.support.http import AgentClient
from vault.models import Secret

pytestmark = pytest.mark.django_db


def test_the_expiry_job_marks_grants_and_deletes_per_agent_credentials(
    api, agent, tool, per_agent_tool, operator, time_machine, audit_log
):
    soon = timezone.now() + timedelta(hours=1)
    shared = grant_assign(agent=agent, tool=tool, actor=operator, expires_at=soon)
    own = grant_assign(
        agent=agent, tool=per_agent_tool, actor=operator, expires_at=soon, credential=new_credential()
    )
    lasting = grant_assign(agent=agent, tool=factory_tool(tool), actor=operator)
    secret_id = own.secret_id
    assert secret_id is not None
    assert api.credentials(per_agent_tool.id).status_code == 200

    time_machine.move_to(soon + timedelta(seconds=1))
    assert api.credentials(per_agent_tool.id).status_code == 403, "refused before any job runs"
    audit_log.mark()
    assert expire_due_grants() == 2
    assert audit_log.actions() == [Action.GRANT_EXPIRED, Action.GRANT_EXPIRED]
    for grant in (shared, own):
        grant.refresh_from_db()
        assert grant.status == GrantStatus.EXPIRED
        assert grant.secret_id is None
    assert not Secret.objects.filter(pk=secret_id).exists(), "credential material does not outlive access"
    assert AccessGrant.objects.get(pk=lasting.pk).status == GrantStatus.APPROVED
    assert grants_expire_due() == 0, "idempotent"
    assert api.request_access(tool.id, "Need it again for the release.").status_code == 201


def factory_tool(tool):
    from tests.factories import make_tool

    return make_tool(tool.org, "Lasting")


def test_rotating_a_credential_keeps_its_recorded_expiry(tool, operator):
    ends = timezone.now() + timedelta(days=60)
    tool_rotate_credential(tool=tool, actor=operator, credential=new_credential(), expires_at=ends)
    rotated = tool_rotate_credential(tool=tool, actor=operator, credential=new_credential())
    assert rotated.credential_expires_at == ends
    cleared = tool_rotate_credential(tool=tool, actor=operator, credential=new_credential(), expires_at=None)
    assert cleared.credential_expires_at is None


def test_an_agent_client_sees_expired_then_can_ask_again(org, operator, time_machine):
    from tests.factories import make_agent, make_tool

    issued = make_agent(org)
    tool = make_tool(org)
    grant_assign(
        agent=issued.agent, tool=tool, actor=operator, expires_at=timezone.now() + timedelta(hours=2)
    )
    time_machine.move_to(timezone.now() + timedelta(hours=3))
    grants_expire_due()
    client = AgentClient(issued.key.plaintext)
    listed = next(t for t in client.tools().json()["tools"] if t["id"] == str(tool.id))
    assert listed["your_access"] == "expired"
