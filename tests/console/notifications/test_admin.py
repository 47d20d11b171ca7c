"""The WebhookEndpoint admin: read-only, scoped, the URL never shown."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import Role
from agentkey.core.admin import FilterLookupsOnly
from notifications.admin import WebhookEndpointAdmin
from notifications.models import DEFAULT_EVENTS
from notifications.services import endpoint_create
from tests import factories
from tests.notifications.conftest import new_url

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/notifications/webhookendpoint/"


@pytest.fixture
def endpoint(org, owner):
    url = new_url("discord")
    made = endpoint_create(org=org, actor=owner, name="#ops", kind="discord", url=url, events=DEFAULT_EVENTS)
    return made, url


def staff(org, role) -> Client:
    client = Client()
    client.force_login(factories.make_member(org, role, user=factories.make_user(is_staff=True)).user)
    return client


def test_the_admin_filters_lookups_before_model_admin():
    mro = WebhookEndpointAdmin.__mro__
    from django.contrib.admin import ModelAdmin

    assert mro.index(FilterLookupsOnly) < mro.index(ModelAdmin)


def test_a_superuser_sees_the_hint_never_the_url(admin_client_for, endpoint):
    made, url = endpoint
    client = admin_client_for()
    for path in (CHANGELIST, f"{CHANGELIST}{made.pk}/change/"):
        response = client.get(path)
        assert response.status_code == 200
        page = response.content.decode()
        assert made.url_hint in page
        assert url not in page
        assert "url_secret" not in page
    assert client.get(f"{CHANGELIST}add/").status_code == 403


def test_it_is_read_only(admin_client_for, endpoint):
    made, _ = endpoint
    client = admin_client_for()
    response = client.post(f"{CHANGELIST}{made.pk}/change/", {"name": "#hijacked"})
    assert response.status_code == 403
    assert client.post(f"{CHANGELIST}{made.pk}/delete/", {"post": "yes"}).status_code == 403
    made.refresh_from_db()
    assert made.name == "#ops"


def test_a_staff_owner_sees_only_their_organizations_channels(org, other_org, endpoint):
    made, _ = endpoint
    endpoint_create(
        org=other_org,
        actor=factories.OPERATOR,
        name="#globex",
        kind="generic",
        url=new_url("generic"),
        events=DEFAULT_EVENTS,
    )
    page = staff(org, Role.OWNER).get(CHANGELIST).content.decode()
    assert "#ops" in page
    assert "#globex" not in page
    stranger = staff(other_org, Role.OWNER)
    assert stranger.get(f"{CHANGELIST}{made.pk}/change/").status_code == 302


def test_lookups_that_would_be_an_oracle_are_refused(admin_client_for, endpoint):
    client = admin_client_for()
    response = client.get(f"{CHANGELIST}?url_secret__ciphertext__startswith=a")
    assert response.status_code in (302, 400)
    assert client.get(f"{CHANGELIST}?kind__exact=discord").status_code == 200
