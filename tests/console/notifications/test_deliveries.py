"""Deliveries in the console: the recent ones per channel (dead ones highlighted), "Send test
notification", "Retry", the generic signing secret shown once and rotated, the email setting.
Every action: who may, another organization's objects, the audit event."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from accounts.models import Role
from notifications.models import (
    DEFAULT_EVENTS,
    Delivery,
    DeliveryStatus,
    EmailSettings,
    Event,
    WebhookEndpoint,
)
from notifications.services import endpoint_create
from tests import factories
from tests.notifications.conftest import new_url, request_event
from tests.support.secret_watch import WATCH
from vault.services import secret_reveal

pytestmark = pytest.mark.django_db

SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]{40,}")
MANAGERS = [Role.OWNER, Role.ADMIN]
OTHERS = [Role.APPROVER, Role.AUDITOR]


def console_for(membership: Any) -> Client:
    client = Client()
    client.force_login(membership.user)
    return client


def take_shown_secret(response: Any) -> str:
    """The signing secret on the shown-once page, which must show it exactly once; only this response
    is taken out of the session's secret watch (any other response containing it still fails the run)."""
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0") or "no-store" in response["Cache-Control"]
    page = response.content.decode()
    [secret] = (str(found) for found in SECRET.findall(page))
    assert page.count(secret) == 1
    assert "will not be shown again" in page
    where = f"{response.wsgi_request.method} {response.wsgi_request.path} -> 200"
    with WATCH.lock:
        WATCH.corpus[:] = [(w, text) for (w, text) in WATCH.corpus if not (w == where and secret in text)]
    return secret


@pytest.fixture
def slack(org, owner) -> WebhookEndpoint:
    return endpoint_create(
        org=org,
        actor=owner,
        name="#requests",
        kind="slack",
        url=new_url("slack"),
        events=["access.requested"],
    )


@pytest.fixture
def generic(org, owner) -> WebhookEndpoint:
    return endpoint_create(
        org=org,
        actor=owner,
        name="#hooks",
        kind="generic",
        url=new_url("generic"),
        events=["access.requested"],
    )


def dead_delivery(org) -> Delivery:
    [delivery] = [d for d in request_event(org) if d.endpoint_id is not None]
    Delivery.objects.filter(id=delivery.id).update(
        status=DeliveryStatus.DEAD,
        attempts=1,
        last_error="The endpoint answered HTTP 410; not retried.",
        last_status_code=410,
        next_attempt_at=None,
    )
    delivery.refresh_from_db()
    return delivery


# --- the page ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [*MANAGERS, *OTHERS])
def test_every_member_sees_recent_deliveries_with_dead_ones_highlighted(org, slack, role):
    dead = dead_delivery(org)
    [pending] = request_event(org)
    page = console_for(factories.make_member(org, role)).get("/notifications/").content.decode()
    assert f'id="delivery-{dead.id}" class="delivery dead delivery-dead"' in page
    assert f'id="delivery-{pending.id}" class="delivery pending"' in page
    assert "The endpoint answered HTTP 410; not retried." in page
    assert "1 gave up" in page
    managing = role in MANAGERS
    assert (f'action="/notifications/deliveries/{dead.id}/retry"' in page) is managing
    assert (f'action="/notifications/deliveries/{pending.id}/retry"' in page) is False
    assert (f'action="/notifications/{slack.id}/test"' in page) is managing


def test_the_page_shows_the_email_setting_and_recent_emails(org, owner):
    from allauth.account.models import EmailAddress

    EmailAddress.objects.create(user=owner.user, email=owner.user.email, verified=True, primary=True)
    [email] = request_event(org)
    page = console_for(owner).get("/notifications/").content.decode()
    assert "Email goes to the 1 member with a verified address" in page
    assert f'id="delivery-{email.id}"' in page
    assert owner.user.email in page


def test_the_page_makes_a_constant_number_of_queries(org, owner, slack, django_assert_max_num_queries):
    client = console_for(owner)
    request_event(org)
    client.get("/notifications/")
    with django_assert_max_num_queries(11) as few:
        client.get("/notifications/")
    for n in range(4):
        endpoint = endpoint_create(
            org=org,
            actor=owner,
            name=f"#c{n}",
            kind="discord",
            url=new_url("discord"),
            events=["access.requested"],
        )
        assert endpoint
    for _ in range(3):
        request_event(org)
    dead_delivery(org) if False else None
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get("/notifications/").status_code == 200


# --- send test notification ---------------------------------------------------------------------------


@pytest.mark.parametrize("role", MANAGERS)
def test_a_manager_sends_a_test_notification(org, slack, role, audit_log):
    member = factories.make_member(org, role)
    response = console_for(member).post(f"/notifications/{slack.id}/test")
    assert response.status_code == 302
    delivery = Delivery.objects.get(event=Event.TEST)
    assert (delivery.endpoint_id, delivery.status, delivery.channel) == (slack.id, "pending", "slack")
    assert delivery.payload["subject"] == {"channel": "#requests", "requested_by": member.user.email}
    assert delivery.payload["link"].endswith("/notifications/")
    [event] = audit_log.new()
    assert (event.action, event.target_id, event.actor_id) == (
        "notification.test_sent",
        str(slack.id),
        str(member.user_id),
    )
    assert event.metadata == {"delivery_id": str(delivery.id)}


@pytest.mark.parametrize("role", OTHERS)
def test_approvers_and_auditors_cannot_send_a_test(org, slack, role, audit_log):
    response = console_for(factories.make_member(org, role)).post(f"/notifications/{slack.id}/test")
    assert response.status_code == 403
    assert not Delivery.objects.exists()
    assert audit_log.new() == []


def test_another_organizations_channel_cannot_be_tested(other_org, slack, audit_log):
    stranger = factories.make_member(other_org, Role.OWNER)
    assert console_for(stranger).post(f"/notifications/{slack.id}/test").status_code == 404
    assert not Delivery.objects.exists()
    assert audit_log.new() == []


def test_the_test_button_needs_post(owner, slack):
    assert console_for(owner).get(f"/notifications/{slack.id}/test").status_code == 405


# --- retry ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", MANAGERS)
def test_a_manager_retries_a_dead_delivery(org, slack, role, audit_log):
    delivery = dead_delivery(org)
    audit_log.mark()
    member = factories.make_member(org, role)
    response = console_for(member).post(f"/notifications/deliveries/{delivery.id}/retry")
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("pending", 0)
    assert delivery.next_attempt_at is not None
    [event] = audit_log.new()
    assert (event.action, event.target_type, event.target_id) == (
        "notification.delivery_retried",
        "notification_delivery",
        str(delivery.id),
    )
    assert event.metadata == {
        "channel": "slack",
        "event": "access.requested",
        "endpoint_id": str(slack.id),
        "previous_attempts": 1,
    }


def test_a_delivery_still_being_retried_cannot_be_retried_by_hand(org, owner, slack, audit_log):
    [delivery] = request_event(org)
    audit_log.mark()
    response = console_for(owner).post(f"/notifications/deliveries/{delivery.id}/retry")
    assert response.status_code == 302
    assert "Only deliveries that gave up can be retried; this one is pending." in next(
        str(m) for m in get_messages(response.wsgi_request)
    )
    assert audit_log.new() == []


@pytest.mark.parametrize("role", OTHERS)
def test_approvers_and_auditors_cannot_retry(org, slack, role):
    delivery = dead_delivery(org)
    response = console_for(factories.make_member(org, role)).post(
        f"/notifications/deliveries/{delivery.id}/retry"
    )
    assert response.status_code == 403
    delivery.refresh_from_db()
    assert delivery.status == "dead"


def test_another_organizations_delivery_cannot_be_retried(org, other_org, slack):
    delivery = dead_delivery(org)
    stranger = factories.make_member(other_org, Role.OWNER)
    assert console_for(stranger).post(f"/notifications/deliveries/{delivery.id}/retry").status_code == 404
    delivery.refresh_from_db()
    assert delivery.status == "dead"


# --- the signing secret ------------------------------------------------------------------------------


def test_adding_a_generic_channel_shows_its_signing_secret_once(org, owner, settings, audit_log):
    url = new_url("generic")
    response = console_for(owner).post(
        "/notifications/new",
        {"name": "#hooks", "kind": "generic", "url": url, "events": ["access.requested"]},
    )
    secret = take_shown_secret(response)
    endpoint = WebhookEndpoint.objects.get(org=org)
    assert endpoint.signing_secret is not None
    assert secret_reveal(secret=endpoint.signing_secret) == secret
    assert url not in response.content.decode()
    assert "webhook-signature" in response.content.decode()
    assert audit_log.actions() == ["notification.endpoint_created"]
    assert secret not in str(audit_log.new()[0].metadata)
    later = console_for(owner).get("/notifications/").content.decode()
    assert secret not in later
    assert "Rotate signing secret" in later


def test_slack_and_discord_channels_have_no_signing_secret(org, owner):
    response = console_for(owner).post(
        "/notifications/new",
        {"name": "#s", "kind": "slack", "url": new_url("slack"), "events": ["access.requested"]},
    )
    assert response.status_code == 302
    assert WebhookEndpoint.objects.get().signing_secret is None


def test_switching_a_channel_to_generic_shows_its_new_secret_once_and_back_destroys_it(org, owner, slack):
    client = console_for(owner)
    response = client.post(
        f"/notifications/{slack.id}/edit",
        {"name": "#requests", "kind": "generic", "url": new_url("generic"), "events": ["access.requested"]},
    )
    secret = take_shown_secret(response)
    slack.refresh_from_db()
    assert secret_reveal(secret=slack.signing_secret) == secret
    secret_id = slack.signing_secret_id
    response = client.post(
        f"/notifications/{slack.id}/edit",
        {"name": "#requests", "kind": "slack", "url": new_url("slack"), "events": ["access.requested"]},
    )
    assert response.status_code == 302
    slack.refresh_from_db()
    assert slack.signing_secret is None
    from vault.models import Secret

    assert not Secret.objects.filter(id=secret_id).exists()


@pytest.mark.parametrize("role", MANAGERS)
def test_a_manager_rotates_the_signing_secret_and_sees_the_new_one_once(org, generic, role, audit_log):
    old = secret_reveal(secret=generic.signing_secret)
    member = factories.make_member(org, role)
    response = console_for(member).post(f"/notifications/{generic.id}/rotate-secret")
    secret = take_shown_secret(response)
    assert secret != old
    generic.refresh_from_db()
    assert secret_reveal(secret=generic.signing_secret) == secret
    assert "The old secret stopped working just now" in response.content.decode()
    [event] = audit_log.new()
    assert (event.action, event.target_id, event.actor_id) == (
        "notification.signing_secret_rotated",
        str(generic.id),
        str(member.user_id),
    )
    assert event.metadata == {}


@pytest.mark.parametrize("role", OTHERS)
def test_approvers_and_auditors_cannot_rotate(org, generic, role, audit_log):
    old = secret_reveal(secret=generic.signing_secret)
    response = console_for(factories.make_member(org, role)).post(
        f"/notifications/{generic.id}/rotate-secret"
    )
    assert response.status_code == 403
    generic.refresh_from_db()
    assert secret_reveal(secret=generic.signing_secret) == old
    assert audit_log.new() == []


def test_another_organizations_secret_cannot_be_rotated(other_org, generic, audit_log):
    stranger = factories.make_member(other_org, Role.OWNER)
    assert console_for(stranger).post(f"/notifications/{generic.id}/rotate-secret").status_code == 404
    assert audit_log.new() == []


def test_a_slack_channel_has_no_secret_to_rotate(owner, slack, audit_log):
    response = console_for(owner).post(f"/notifications/{slack.id}/rotate-secret")
    assert response.status_code == 302
    assert "Only generic webhooks have a signing secret." in next(
        str(m) for m in get_messages(response.wsgi_request)
    )
    assert audit_log.new() == []


# --- the email setting ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", MANAGERS)
def test_a_manager_changes_the_email_setting(org, role, audit_log):
    member = factories.make_member(org, role)
    client = console_for(member)
    page = client.get("/notifications/email").content.decode()
    assert 'name="enabled"' in page
    assert page.count("checked") == 1 + len(DEFAULT_EVENTS)  # on, and the default events
    response = client.post(
        "/notifications/email", {"enabled": "on", "events": ["access.requested", "access.denied"]}
    )
    assert response.status_code == 302
    setting = EmailSettings.objects.get(org=org)
    assert (setting.enabled, setting.events, setting.updated_by) == (
        True,
        ["access.requested", "access.denied"],
        member.user,
    )
    response = client.post("/notifications/email", {})
    assert response.status_code == 302
    setting.refresh_from_db()
    assert (setting.enabled, setting.events) == (False, [])
    assert audit_log.actions() == ["notification.email_updated"] * 2


def test_email_on_without_events_is_refused_with_the_reason(org, owner, audit_log):
    response = console_for(owner).post("/notifications/email", {"enabled": "on"})
    assert response.status_code == 200
    assert "Choose at least one event to email about." in response.content.decode()
    assert audit_log.new() == []


@pytest.mark.parametrize("role", OTHERS)
def test_approvers_and_auditors_cannot_change_the_email_setting(org, role):
    client = console_for(factories.make_member(org, role))
    assert client.get("/notifications/email").status_code == 403
    assert client.post("/notifications/email", {}).status_code == 403
    assert not EmailSettings.objects.exists()


def test_the_email_setting_is_per_organization(org, other_org):
    stranger = factories.make_member(other_org, Role.OWNER)
    console_for(stranger).post("/notifications/email", {})
    assert EmailSettings.objects.get().org_id == other_org.id
