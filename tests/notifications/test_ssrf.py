"""Generic webhook URLs that point inside the network are refused: when saved (after DNS
resolution) and when sent, on every redirect hop."""

from __future__ import annotations

import socket

import pytest

from agentkey.core.errors import ValidationFailed
from notifications.models import DeliveryStatus, WebhookEndpoint
from notifications.services import endpoint_create, endpoint_update
from tests.notifications.conftest import connect, receiver, request_event, run, status
from tests.support.secret_watch import WATCH

pytestmark = pytest.mark.django_db


def create_generic(org, owner, url):
    WATCH.register(url)
    return endpoint_create(
        org=org, actor=owner, name="#hooks", kind="generic", url=url, events=["access.requested"]
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1/agentkey/hook", "127.0.0.1 resolves to 127.0.0.1, a loopback address"),
        ("https://10.0.0.5/agentkey/hook", "10.0.0.5 resolves to 10.0.0.5, a private address"),
        ("https://169.254.169.254/latest/meta-data/", "169.254.169.254, a cloud metadata address"),
        ("https://[::1]/agentkey/hook", "::1 resolves to ::1, a loopback address"),
        ("https://[::ffff:10.0.0.5]/agentkey/hook", "a private address (inside an IPv6 address)"),
        ("https://192.168.1.20:8443/agentkey/hook", "a private address"),
        ("https://100.64.0.7/agentkey/hook", "a carrier-grade NAT address"),
        ("https://localhost/agentkey/hook", "a loopback address"),
    ],
)
def test_internal_addresses_are_refused_when_saved_with_the_reason(org, owner, settings, url, reason):
    settings.AGENTKEY_ALLOW_LOOPBACK_URLS = False
    with pytest.raises(ValidationFailed) as refused:
        create_generic(org, owner, url)
    assert reason in refused.value.error
    assert "AgentKey only calls public addresses" in refused.value.error
    assert refused.value.hint.startswith("Use the service's public URL.")
    assert [d.field for d in refused.value.details] == ["url"]
    assert "/agentkey/hook" not in refused.value.error, "the URL itself is never echoed"
    assert not WebhookEndpoint.objects.exists()


def test_a_hostname_resolving_to_a_private_address_is_refused(org, owner, monkeypatch):
    real = socket.getaddrinfo

    def fake_dns(host, *args, **kwargs):  # DNS is outside the project: stand in for it
        if host == "hooks.internal.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 443))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    with pytest.raises(ValidationFailed) as refused:
        create_generic(org, owner, "https://hooks.internal.example.com/agentkey/in")
    assert refused.value.error == (
        "hooks.internal.example.com resolves to 10.1.2.3, a private address; AgentKey only calls public addresses."
    )


def test_changing_the_url_to_an_internal_one_is_refused_too(org, owner):
    endpoint = create_generic(org, owner, "https://93.184.215.14/agentkey/in")
    with pytest.raises(ValidationFailed, match="a cloud metadata address"):
        endpoint_update(endpoint=endpoint, actor=owner, url="https://169.254.169.254/latest/")


def test_loopback_is_accepted_only_with_the_setting(org, owner, settings):
    settings.AGENTKEY_ALLOW_LOOPBACK_URLS = True
    assert create_generic(org, owner, "http://127.0.0.1:8025/agentkey/hook").kind == "generic"


def test_the_console_shows_the_refusal_next_to_the_url(org, owner, settings):
    from django.test import Client

    client = Client()
    client.force_login(owner.user)
    WATCH.register("https://10.0.0.5/agentkey/secret-path")
    response = client.post(
        "/notifications/new",
        {
            "name": "#hooks",
            "kind": "generic",
            "url": "https://10.0.0.5/agentkey/secret-path",
            "events": ["access.requested"],
        },
    )
    assert response.status_code == 200
    assert "10.0.0.5 resolves to 10.0.0.5, a private address" in response.content.decode()
    assert "secret-path" not in response.content.decode()


@pytest.mark.usefixtures("loopback")
@pytest.mark.parametrize(("code", "location"), [(302, "http://10.0.0.5/"), (307, "https://10.0.0.5/")])
def test_a_redirect_to_a_private_address_at_send_time_is_dead(org, owner, code, location):
    """307 is followed by the client (its hop is checked and refused); 302 is not followed
    for a POST, and its target is named the same way."""
    with receiver(status(code, location=location)) as server:
        connect(org, owner, server, "generic")
        [delivery] = request_event(org)
        delivery = run(delivery)
    assert delivery.status == DeliveryStatus.DEAD
    assert delivery.attempts == 1
    assert delivery.last_error.startswith(f"The URL redirected to {location}…, which is refused: ")
    assert "10.0.0.5 resolves to 10.0.0.5, a private address" in delivery.last_error
    assert len(server.requests) == 1, "the private address was never contacted"


@pytest.mark.usefixtures("loopback")
def test_a_redirect_to_a_public_address_is_not_followed_for_a_webhook(org, owner):
    with receiver(status(301, location="https://93.184.215.14/moved/secret")) as server:
        connect(org, owner, server, "slack")
        [delivery] = request_event(org)
        delivery = run(delivery)
    assert (delivery.status, delivery.last_status_code) == ("dead", 301)
    assert delivery.last_error == (
        "The endpoint answered HTTP 301, a redirect, which webhooks do not follow; use the final URL."
    )


@pytest.mark.usefixtures("loopback")
def test_errors_never_contain_the_webhook_url(org, owner):
    with receiver(status(307, location="/elsewhere/also-secret")) as server:
        channel = connect(org, owner, server, "generic")
        [delivery] = request_event(org)
        delivery = run(delivery)
    token = channel.url.rsplit("/", 1)[-1]
    assert token not in delivery.last_error
    assert "also-secret" not in delivery.last_error
