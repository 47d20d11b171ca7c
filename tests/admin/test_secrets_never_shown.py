"""No admin page ever shows a credential, an agent key or its hash (STYLE: no secrets in admin pages)."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.urls import reverse

from accounts.models import AgentKey
from tests import factories
from tests.admin.conftest import AGENTS, GRANTS, TOOLS, html, take_shown_key
from tests.support.http import AgentClient
from vault.models import Secret

pytestmark = pytest.mark.django_db


def test_no_admin_page_shows_a_secret_created_through_the_admin(org, per_agent_tool, console):
    shared_credential = factories.new_credential("shared")
    tool_fields = {
        "org": org.pk,
        "name": "Sentry",
        "description": "",
        "url": "https://sentry.io",
        "auth_type": "api_key",
        "credential_mode": "shared",
        "credential": shared_credential,
        "usage_guide": "",
        "config_key": "",
    }
    assert console.post(f"{TOOLS}add/", tool_fields).status_code == 302
    first_key = take_shown_key(
        console.post(f"{AGENTS}add/", {"org": org.pk, "name": "Crawler", "description": ""})
    )
    agent = AgentKey.objects.get(prefix=first_key[:13]).agent
    second_key = take_shown_key(console.post(f"{AGENTS}{agent.pk}/rotate-key/", {"grace": "1h"}))
    api = AgentClient(second_key)
    grant_id = api.request_access(per_agent_tool.id).json()["request_id"]
    agent_credential = factories.new_credential("per_agent")
    approved = console.post(
        f"{GRANTS}{grant_id}/approve/", {"duration": "none", "credential": agent_credential}
    )
    assert approved.status_code == 302
    assert api.credentials(per_agent_tool.id).json()["credential"] == agent_credential

    secrets = [shared_credential, agent_credential, first_key, second_key]
    secrets += list(AgentKey.objects.values_list("key_hash", flat=True))
    for row in Secret.objects.all():
        secrets += [bytes(row.ciphertext).hex(), bytes(row.wrapped_dek).hex()]

    pages = []
    for model in admin.site._registry:
        opts = model._meta
        pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
        for pk in model._default_manager.values_list("pk", flat=True)[:20]:
            pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(pk)]))
    pages.append(f"{GRANTS}{grant_id}/approve/")
    pages.append(f"{AGENTS}{agent.pk}/rotate-key/")

    for page in pages:
        response = console.get(page)
        assert response.status_code in (200, 403), page
        body = html(response)
        for value in secrets:
            assert value not in body, f"{page} shows a secret"
    secret_page = html(console.get(reverse("admin:vault_secret_change", args=[Secret.objects.all()[0].pk])))
    assert "testA" in secret_page  # the master key id, which is all there is to see
    assert "Ciphertext" not in secret_page
    assert "Wrapped dek" not in secret_page
