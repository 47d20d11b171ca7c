"""Notification channel services: validation, the URL kept secret, roles, audit in the same transaction."""

from __future__ import annotations

from unittest import mock

import pytest

from accounts.models import Role
from agentkey.core.errors import Conflict, Forbidden, ValidationFailed
from notifications.models import DEFAULT_EVENTS, ChannelKind, Event, WebhookEndpoint
from notifications.services import (
    endpoint_create,
    endpoint_delete,
    endpoint_set_enabled,
    endpoint_update,
    url_hint,
)
from tests import factories
from tests.notifications.conftest import new_url
from vault.models import Secret
from vault.services import secret_reveal

pytestmark = pytest.mark.django_db


def create(org, actor, *, name="#agent-requests", kind="slack", url=None, events=DEFAULT_EVENTS):
    return endpoint_create(
        org=org, actor=actor, name=name, kind=kind, url=new_url(kind) if url is None else url, events=events
    )


def test_create_keeps_the_url_in_the_vault_and_only_a_hint_on_the_row(org, owner, audit_log):
    url = new_url("slack")
    endpoint = create(org, owner, url=url)
    endpoint.refresh_from_db()
    assert secret_reveal(secret=endpoint.url_secret) == url
    assert endpoint.url_hint == "https://hooks.slack.com/…" + url[-4:]
    assert url not in repr(endpoint.__dict__)
    assert endpoint.events == [str(e) for e in DEFAULT_EVENTS]
    assert endpoint.enabled
    assert endpoint.created_by == owner.user
    [event] = audit_log.new()
    assert event.action == "notification.endpoint_created"
    assert event.actor_id == str(owner.user_id)
    assert event.target_type == "webhook_endpoint"
    assert event.target_label == "#agent-requests"
    assert event.org_id == org.id
    assert event.metadata == {"kind": "slack", "events": [str(e) for e in DEFAULT_EVENTS]}
    assert url not in str(event.metadata)
    assert url[-20:] not in str(event.metadata)


@pytest.mark.parametrize(
    ("kind", "url"),
    [
        ("slack", "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX"),
        ("slack", "https://HOOKS.SLACK.COM/services/T000/B000/XXXXXXXXXXXXXXXX"),
        ("discord", "https://discord.com/api/webhooks/123/abcdefabcdefabcdef"),
        ("discord", "https://discordapp.com/api/webhooks/123/abcdefabcdefabcdef"),
        ("generic", "https://example.com/hook?token=abcdefabcdef"),
        ("generic", "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX"),
        ("generic", "https://93.184.215.14:8443/in"),  # a public address, any port
        ("generic", "https://does-not-resolve.invalid/in"),  # checked again before every send
    ],
)
def test_valid_urls(org, owner, kind, url):
    assert create(org, owner, kind=kind, url=url).kind == kind


@pytest.mark.parametrize(
    ("kind", "url", "error"),
    [
        ("slack", "http://hooks.slack.com/services/T000/B000/XXXX", "must start with https://"),
        ("generic", "http://example.com/hook", "must start with https://"),
        ("generic", "ftp://example.com/hook", "must start with https://"),
        ("generic", "example.com/hook", "not a valid URL"),
        ("generic", "https:///nohost", "not a valid URL"),
        ("generic", "https://exa mple.com/hook", "not a valid URL"),
        ("generic", "https://example.com:99999/hook", "not a valid URL"),
        ("generic", "", "Enter the webhook URL"),
        ("generic", "https://example.com/" + "a" * 2000, "longer than 2,000"),
        ("slack", "https://discord.com/api/webhooks/1/abc", "not a Slack"),
        ("slack", "https://hooks.slack.com.evil.com/services/T/B/X", "not a Slack"),
        ("slack", "https://evil.com/hooks.slack.com/services/T/B/X", "not a Slack"),
        ("slack", "https://hooks.slack.com/api/T/B/X", "not a Slack"),
        ("slack", "https://hooks.slack.com/services//", "not a Slack"),
        ("slack", "https://hooks.slack.com:8443/services/T/B/X", "not a Slack"),
        ("slack", "https://user@evil.com@hooks.slack.com/services/T/B/X", "not a valid URL"),
        ("slack", "https://user@hooks.slack.com/services/T/B/X", "not a Slack"),
        ("generic", "https://evil.com\\@example.com/hook", "not a valid URL"),
        ("discord", "https://hooks.slack.com/services/T/B/X", "not a Discord"),
        ("discord", "https://discord.gg/api/webhooks/1/abc", "not a Discord"),
        ("discord", "https://discord.com/webhooks/1/abc", "not a Discord"),
        ("discord", "https://canary.discord.com.evil.net/api/webhooks/1/abc", "not a Discord"),
    ],
)
def test_invalid_urls_are_refused_without_echoing_them(org, owner, audit_log, kind, url, error):
    with pytest.raises(ValidationFailed) as refused:
        create(org, owner, kind=kind, url=url)
    assert error in refused.value.error
    assert [d.field for d in refused.value.details] == ["url"]
    if url:
        assert url not in refused.value.error + refused.value.hint
    assert not WebhookEndpoint.objects.exists()
    assert audit_log.new() == []
    assert not Secret.objects.exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "  "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"kind": "teams", "url": "https://teams.example.com/hook/abcdefabcdef"}, "kind"),
        ({"events": []}, "events"),
        ({"events": ["access.requested", "credential.vended"]}, "events"),
    ],
)
def test_other_fields_are_validated(org, owner, fields, field):
    with pytest.raises(ValidationFailed) as refused:
        create(org, owner, **fields)
    assert [d.field for d in refused.value.details] == [field]


def test_names_are_unique_in_an_organization(org, other_org, owner):
    create(org, owner, name="#alerts")
    with pytest.raises(Conflict):
        create(org, owner, name=" #alerts ")
    assert create(other_org, factories.OPERATOR, name="#alerts").org == other_org


def test_events_are_stored_once_in_a_stable_order(org, owner):
    endpoint = create(org, owner, events=["access.revoked", "access.requested", "access.revoked"])
    assert endpoint.events == ["access.requested", "access.revoked"]


@pytest.mark.parametrize("role", [Role.APPROVER, Role.AUDITOR])
def test_approvers_and_auditors_may_not_change_channels(org, owner, role, audit_log):
    endpoint = create(org, owner)
    audit_log.mark()
    member = factories.make_member(org, role)
    with pytest.raises(Forbidden):
        create(org, member, name="#mine")
    with pytest.raises(Forbidden):
        endpoint_update(endpoint=endpoint, actor=member, name="#renamed")
    with pytest.raises(Forbidden):
        endpoint_set_enabled(endpoint=endpoint, actor=member, enabled=False)
    with pytest.raises(Forbidden):
        endpoint_delete(endpoint=endpoint, actor=member)
    endpoint.refresh_from_db()
    assert (endpoint.name, endpoint.enabled) == ("#agent-requests", True)
    assert audit_log.new() == []


def test_a_member_of_another_organization_may_not_change_ours(org, owner, other_org):
    endpoint = create(org, owner)
    stranger_owner = factories.make_member(other_org, Role.OWNER)
    with pytest.raises(Forbidden):
        endpoint_delete(endpoint=endpoint, actor=stranger_owner)
    with pytest.raises(Forbidden):
        create(org, stranger_owner, name="#theirs")
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()


def test_an_admin_and_the_operator_may(org, admin_member, operator):
    assert create(org, admin_member, name="#a").created_by == admin_member.user
    assert create(org, operator, name="#b").created_by is None


def test_update_without_a_url_keeps_it(org, owner, audit_log):
    url = new_url("slack")
    endpoint = create(org, owner, url=url)
    audit_log.mark()
    updated = endpoint_update(
        endpoint=endpoint, actor=owner, name="#renamed", events=[Event.ACCESS_APPROVED], url=""
    )
    updated.refresh_from_db()
    assert updated.name == "#renamed"
    assert updated.events == ["access.approved"]
    assert secret_reveal(secret=updated.url_secret) == url
    [event] = audit_log.new()
    assert event.action == "notification.endpoint_updated"
    assert event.metadata == {"fields": ["events", "name"]}


def test_update_with_a_url_replaces_it_in_place(org, owner, audit_log):
    endpoint = create(org, owner)
    secret_id = endpoint.url_secret_id
    audit_log.mark()
    url = new_url("slack")
    updated = endpoint_update(endpoint=endpoint, actor=owner, url=url)
    updated.refresh_from_db()
    assert updated.url_secret_id == secret_id
    assert secret_reveal(secret=updated.url_secret) == url
    assert updated.url_hint.endswith(url[-4:])
    [event] = audit_log.new()
    assert event.metadata == {"fields": ["url"]}
    assert url not in str(event.metadata)


def test_changing_the_kind_needs_a_url_of_that_kind(org, owner):
    endpoint = create(org, owner)
    with pytest.raises(ValidationFailed) as refused:
        endpoint_update(endpoint=endpoint, actor=owner, kind=ChannelKind.DISCORD)
    assert "needs its new URL" in refused.value.error
    with pytest.raises(ValidationFailed):
        endpoint_update(endpoint=endpoint, actor=owner, kind=ChannelKind.DISCORD, url=new_url("slack"))
    url = new_url("discord")
    updated = endpoint_update(endpoint=endpoint, actor=owner, kind=ChannelKind.DISCORD, url=url)
    assert updated.kind == "discord"
    assert secret_reveal(secret=updated.url_secret) == url


def test_a_new_url_is_checked_against_the_current_kind(org, owner):
    endpoint = create(org, owner)
    with pytest.raises(ValidationFailed):
        endpoint_update(endpoint=endpoint, actor=owner, url="https://example.com/hook/abcdefabcdef")


def test_an_update_that_changes_nothing_is_not_audited(org, owner, audit_log):
    endpoint = create(org, owner)
    audit_log.mark()
    endpoint_update(endpoint=endpoint, actor=owner, name=endpoint.name, kind="slack", events=endpoint.events)
    assert audit_log.new() == []


def test_renaming_onto_another_channel_is_a_conflict(org, owner):
    create(org, owner, name="#one")
    two = create(org, owner, name="#two")
    with pytest.raises(Conflict):
        endpoint_update(endpoint=two, actor=owner, name="#one")


def test_pause_and_resume_are_audited_once_each(org, owner, audit_log):
    endpoint = create(org, owner)
    audit_log.mark()
    assert not endpoint_set_enabled(endpoint=endpoint, actor=owner, enabled=False).enabled
    endpoint_set_enabled(endpoint=endpoint, actor=owner, enabled=False)
    assert endpoint_set_enabled(endpoint=endpoint, actor=owner, enabled=True).enabled
    assert [(e.action, e.metadata["enabled"]) for e in audit_log.new()] == [
        ("notification.endpoint_updated", False),
        ("notification.endpoint_updated", True),
    ]


def test_delete_destroys_the_stored_url(org, owner, audit_log):
    endpoint = create(org, owner)
    secret_id = endpoint.url_secret_id
    audit_log.mark()
    endpoint_delete(endpoint=endpoint, actor=owner)
    assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
    assert not Secret.objects.filter(pk=secret_id).exists()
    [event] = audit_log.new()
    assert event.action == "notification.endpoint_deleted"
    assert event.target_id == str(endpoint.pk)
    assert event.target_label == "#agent-requests"


def test_a_change_whose_audit_event_fails_is_rolled_back(org, owner):
    with (
        mock.patch("notifications.services.endpoints.audit_record", side_effect=RuntimeError("audit down")),
        pytest.raises(RuntimeError),
    ):
        create(org, owner)
    assert not WebhookEndpoint.objects.exists()
    assert not Secret.objects.exists()


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("https://hooks.slack.com/services/T0/B0/abcdefWXYZ", "https://hooks.slack.com/…WXYZ"),
        ("https://Example.COM:8443/a/long/secret/path/1234", "https://example.com:8443/…1234"),
        ("https://example.com/short", "https://example.com/…"),
        ("https://user:pass@example.com/a/long/secret/path/1234", "https://example.com/…1234"),
        ("https://" + "h" * 200 + ".com/a/long/secret/path/1234", None),
    ],
)
def test_the_hint_shows_the_host_and_at_most_four_characters(url, hint):
    shown = url_hint(url)
    if hint is not None:
        assert shown == hint
    assert len(shown) <= 120
    assert "pass" not in shown
