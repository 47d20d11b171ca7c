"""Helpers for the audit log suites: console clients, events written through the audit service."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from audit.models import Action, AuditEvent
from audit.services import SystemActor, audit_record

ROW_ID = re.compile(r'<div class="muted">#(\d+)</div>')


def console_for(membership: Any) -> Client:
    client = Client()
    client.force_login(membership.user)
    return client


def shown_ids(response: Any) -> list[int]:
    """The event ids on an audit page, in page order."""
    assert response.status_code == 200, response.status_code
    return [int(i) for i in ROW_ID.findall(response.content.decode())]


def org_ids(org: Any, **filters: Any) -> list[int]:
    """What the log holds for ``org`` (newest first): the expected answer."""
    return list(
        AuditEvent.objects.filter(org_id=org.id, **filters).order_by("-id").values_list("id", flat=True)
    )


@pytest.fixture
def record() -> Any:
    """Write one event as a service would: record(Action.X, actor, target, metadata=...)."""

    def write(action: Action, actor: Any, target: Any = None, **metadata: Any) -> AuditEvent:
        return audit_record(action=action, actor=actor, target=target, metadata=metadata)

    return write


@pytest.fixture
def system() -> SystemActor:
    return SystemActor("nightly job")
