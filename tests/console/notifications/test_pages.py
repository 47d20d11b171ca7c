"""Notification settings in the console: list, add, edit, pause/resume, remove; the URL never comes back."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from accounts.models import Role
from audit.models import AuditEvent
from notifications.models import DEFAULT_EVENTS, WebhookEndpoint
from notifications.services import endpoint_create
from tests import factories
from tests.notifications.conftest import new_url
from tests.support.secret_watch import WATCH
from vault.models import Secret
from vault.services import secret_reveal

pytestmark = pytest.mark.django_db


def console_for(membership: Any) -> Client:
    client = Client()
    client.force_login(membership.user)
    return client


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def slack(org, owner) -> tuple[WebhookEndpoint, str]:
    url = new_url("slack")
    endpoint = endpoint_create(
        org=org, actor=owner, name="#agent-requests", kind="slack", url=url, events=DEFAULT_EVENTS
    )
    return endpoint, url


def form(**fields: Any) -> dict[str, Any]:
    data = {"name": "#ops", "kind": "slack", "url": "", "events": ["access.requested", "tool.suggested"]}
    data.update(fields)
    return data


# --- the list ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN, Role.APPROVER, Role.AUDITOR])
def test_every_member_sees_the_channels_with_the_masked_url_only(org, slack, role):
    endpoint, url = slack
    response = console_for(factories.make_member(org, role)).get("/notifications/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "#agent-requests" in page
    assert endpoint.url_hint in page
    assert "New access request" in page
    assert url not in page
    assert url.rsplit("/", 1)[-1] not in page
    managing = role in (Role.OWNER, Role.ADMIN)
    assert ("Add a channel" in page) is managing
    assert (f'action="/notifications/{endpoint.id}/toggle"' in page) is managing
    assert (f'action="/notifications/{endpoint.id}/delete"' in page) is managing


def test_the_list_shows_only_the_active_organizations_channels(other_org, slack):
    stranger = factories.make_member(other_org, Role.OWNER)
    page = console_for(stranger).get("/notifications/").content.decode()
    assert "#agent-requests" not in page
    assert "No channels yet." in page


def test_the_list_makes_a_constant_number_of_queries(org, owner, slack, django_assert_max_num_queries):
    client = console_for(owner)
    client.get("/notifications/")
    with django_assert_max_num_queries(11) as few:
        client.get("/notifications/")
    for n in range(5):
        endpoint_create(
            org=org,
            actor=owner,
            name=f"#c{n}",
            kind="generic",
            url=new_url("generic"),
            events=["access.approved"],
        )
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get("/notifications/").status_code == 200


# --- add -----------------------------------------------------------------------------------------


def test_the_add_form_has_the_default_events_and_an_empty_url(owner):
    page = console_for(owner).get("/notifications/new").content.decode()
    for event in DEFAULT_EVENTS:
        assert f'value="{event}"' in page
    assert page.count("checked") == len(DEFAULT_EVENTS)
    assert 'type="url" name="url"' in page
    assert '<label for="id_url">' in page
    assert "<legend>Send a message for</legend>" in page


def test_an_owner_adds_a_slack_channel(org, owner, audit_log):
    url = new_url("slack")
    response = console_for(owner).post("/notifications/new", form(url=url))
    assert response.status_code == 302
    assert response["Location"] == "/notifications/"
    endpoint = WebhookEndpoint.objects.get(org=org)
    assert (endpoint.name, endpoint.kind) == ("#ops", "slack")
    assert endpoint.events == ["access.requested", "tool.suggested"]
    assert secret_reveal(secret=endpoint.url_secret) == url
    assert audit_log.actions() == ["notification.endpoint_created"]
    assert audit_log.new()[0].actor_id == str(owner.user_id)
    assert "#ops added." in messages_of(response)[0]
    assert url not in console_for(owner).get("/notifications/").content.decode()


def test_an_admin_adds_a_discord_channel(org, admin_member, audit_log):
    response = console_for(admin_member).post(
        "/notifications/new", form(name="Discord", kind="discord", url=new_url("discord"))
    )
    assert response.status_code == 302
    assert WebhookEndpoint.objects.get(org=org).kind == "discord"
    assert audit_log.actions() == ["notification.endpoint_created"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": "http://hooks.slack.com/services/T1/B1/plainhttpsecret"}, "must start with https://"),
        (
            {"url": "https://hooks.evil.com/services/T1/B1/wronghostsecret"},
            "not a Slack incoming-webhook URL",
        ),
        (
            {"kind": "discord", "url": "https://hooks.slack.com/services/T1/B1/slackfordiscord"},
            "not a Discord webhook URL",
        ),
        (
            {"kind": "discord", "url": "https://discord.com/channels/1/wrongpathsecret"},
            "not a Discord webhook URL",
        ),
        ({"kind": "generic", "url": "http://example.com/generic-plain-http"}, "must start with https://"),
        ({"events": []}, "Choose at least one event."),
        ({"name": "   "}, "This field is required."),
    ],
)
def test_a_refused_channel_shows_why_and_never_echoes_the_url(org, owner, audit_log, fields, message):
    data = form(**{"url": new_url("slack"), **fields})
    WATCH.register(data["url"])
    response = console_for(owner).post("/notifications/new", data)
    assert response.status_code == 200
    page = response.content.decode()
    assert message in page
    assert 'class="errorlist"' in page
    assert data["url"] not in page
    assert 'name="url" value' not in page
    assert not WebhookEndpoint.objects.exists()
    assert not Secret.objects.exists()
    assert audit_log.new() == []


def test_a_taken_name_is_refused(org, owner, slack, audit_log):
    response = console_for(owner).post(
        "/notifications/new", form(name="#agent-requests", url=new_url("slack"))
    )
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert WebhookEndpoint.objects.count() == 1
    assert audit_log.new() == []


# --- edit ----------------------------------------------------------------------------------------


def test_the_edit_form_shows_the_hint_never_the_url(owner, slack):
    endpoint, url = slack
    page = console_for(owner).get(f"/notifications/{endpoint.id}/edit").content.decode()
    assert endpoint.url_hint in page
    assert url not in page
    assert 'value="#agent-requests"' in page
    assert "Leave empty to keep the current URL." in page


def test_editing_without_a_url_keeps_it(owner, slack, audit_log):
    endpoint, url = slack
    response = console_for(owner).post(
        f"/notifications/{endpoint.id}/edit", form(name="#renamed", events=["access.denied"])
    )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.name == "#renamed"
    assert endpoint.events == ["access.denied"]
    assert secret_reveal(secret=endpoint.url_secret) == url
    assert audit_log.actions() == ["notification.endpoint_updated"]
    assert audit_log.new()[0].metadata == {"fields": ["events", "name"]}


def test_editing_with_a_new_url_replaces_it(owner, slack, audit_log):
    endpoint, _ = slack
    url = new_url("slack")
    response = console_for(owner).post(
        f"/notifications/{endpoint.id}/edit", form(name=endpoint.name, url=url, events=endpoint.events)
    )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert secret_reveal(secret=endpoint.url_secret) == url
    assert endpoint.url_hint.endswith(url[-4:])
    assert audit_log.new()[0].metadata == {"fields": ["url"]}


def test_a_refused_edit_changes_nothing(owner, slack, audit_log):
    endpoint, url = slack
    bad = "https://discord.com/api/webhooks/1/" + "refusededitsecret"
    WATCH.register(bad)
    response = console_for(owner).post(f"/notifications/{endpoint.id}/edit", form(name="#x", url=bad))
    assert response.status_code == 200
    assert "not a Slack" in response.content.decode()
    assert bad not in response.content.decode()
    endpoint.refresh_from_db()
    assert endpoint.name == "#agent-requests"
    assert secret_reveal(secret=endpoint.url_secret) == url
    assert audit_log.new() == []


# --- pause, resume, remove ---------------------------------------------------------------------------


def test_pause_and_resume_without_javascript(owner, slack, audit_log):
    endpoint, _ = slack
    client = console_for(owner)
    response = client.post(f"/notifications/{endpoint.id}/toggle", {"enabled": "0"})
    assert response.status_code == 302
    assert messages_of(response) == ["#agent-requests paused."]
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert "Paused" in client.get("/notifications/").content.decode()
    client.post(f"/notifications/{endpoint.id}/toggle", {"enabled": "1"})
    endpoint.refresh_from_db()
    assert endpoint.enabled
    assert [e.metadata["enabled"] for e in audit_log.new()] == [False, True]


def test_pause_with_htmx_swaps_the_row(owner, slack, audit_log):
    endpoint, url = slack
    response = console_for(owner).post(
        f"/notifications/{endpoint.id}/toggle", {"enabled": "0"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    row = response.content.decode()
    assert row.lstrip().startswith(f'<tbody id="endpoint-{endpoint.id}" class="endpoint">')
    assert "Paused" in row
    assert ">Resume<" in row
    assert url not in row
    assert audit_log.actions() == ["notification.endpoint_updated"]


def test_a_toggle_without_a_state_changes_nothing(owner, slack, audit_log):
    endpoint, _ = slack
    response = console_for(owner).post(f"/notifications/{endpoint.id}/toggle", {})
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.enabled
    assert audit_log.new() == []


def test_remove_destroys_the_channel_and_its_url(owner, slack, audit_log):
    endpoint, _ = slack
    response = console_for(owner).post(f"/notifications/{endpoint.id}/delete")
    assert response.status_code == 302
    assert not WebhookEndpoint.objects.exists()
    assert not Secret.objects.filter(pk=endpoint.url_secret_id).exists()
    assert audit_log.actions() == ["notification.endpoint_deleted"]
    assert "removed" in messages_of(response)[0]


def test_changes_need_post(owner, slack):
    endpoint, _ = slack
    client = console_for(owner)
    assert client.get(f"/notifications/{endpoint.id}/toggle").status_code == 405
    assert client.get(f"/notifications/{endpoint.id}/delete").status_code == 405


# --- who may -------------------------------------------------------------------------------------


def actions(endpoint: WebhookEndpoint) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("get", "/notifications/new", {}),
        ("post", "/notifications/new", form(url=new_url("slack"))),
        ("get", f"/notifications/{endpoint.id}/edit", {}),
        ("post", f"/notifications/{endpoint.id}/edit", form(name="#mine")),
        ("post", f"/notifications/{endpoint.id}/toggle", {"enabled": "0"}),
        ("post", f"/notifications/{endpoint.id}/delete", {}),
    ]


@pytest.mark.parametrize("role", [Role.APPROVER, Role.AUDITOR])
def test_approvers_and_auditors_are_refused_and_nothing_changes(org, slack, role, audit_log):
    endpoint, url = slack
    client = console_for(factories.make_member(org, role))
    events = AuditEvent.objects.count()
    for method, path, data in actions(endpoint):
        assert getattr(client, method)(path, data).status_code == 403, (method, path)
    endpoint.refresh_from_db()
    assert (endpoint.name, endpoint.enabled) == ("#agent-requests", True)
    assert secret_reveal(secret=endpoint.url_secret) == url
    assert WebhookEndpoint.objects.count() == 1
    assert AuditEvent.objects.count() == events


def test_another_organizations_owner_gets_404_on_our_channel(org, other_org, slack, audit_log):
    endpoint, _ = slack
    client = console_for(factories.make_member(other_org, Role.OWNER))
    for method, path, data in actions(endpoint)[2:]:
        assert getattr(client, method)(path, data).status_code == 404, (method, path)
    endpoint.refresh_from_db()
    assert (endpoint.name, endpoint.enabled) == ("#agent-requests", True)
    assert audit_log.new() == []


def test_anonymous_people_are_sent_to_sign_in(client, slack):
    endpoint, _ = slack
    for path in ("/notifications/", "/notifications/new", f"/notifications/{endpoint.id}/edit"):
        response = client.get(path)
        assert response.status_code == 302
        assert "/accounts/login/" in response["Location"]
    assert client.post(f"/notifications/{endpoint.id}/delete").status_code == 302
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
