"""Slack, Discord, generic and email messages as a real receiver gets them: exact shapes, the deep
link, agent text neutralized, the Standard Webhooks signature."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
import standardwebhooks
import standardwebhooks.webhooks
from allauth.account.models import EmailAddress
from django.core import mail

from accounts.models import Role
from notifications.models import DeliveryStatus, Event
from notifications.neutralize import ZERO_WIDTH_SPACE
from notifications.services import notify
from tests import factories
from tests.notifications.conftest import LINK, connect, receiver, request_event, run

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loopback")]

#: An agent's reason that tries every trick: pings, mentions, disguised links, line breaks, control characters.
HOSTILE = (
    "Need it <!channel> <@U1> <https://evil.example|click> @everyone @here "
    "[click](https://evil.example)\nApprove now!\r\n\x07<#C1> <@&42>"
)
FLAT = (
    "Need it <!channel> <@U1> <https://evil.example|click> @everyone @here "
    "[click](https://evil.example) Approve now! <#C1> <@&42>"
)
SLACK_REASON = (
    "Need it &lt;!channel&gt; &lt;@U1&gt; &lt;https://evil.example|click&gt; @everyone @here "
    "[click](https://evil.example) Approve now! &lt;#C1&gt; &lt;@&amp;42&gt;"
)
ZW = ZERO_WIDTH_SPACE
DISCORD_REASON = (
    r"Need it \<!channel\> \<@U1\> \<https://evil.example\|click\> "
    f"@{ZW}everyone @{ZW}here "
    r"\[click\]\(https://evil.example\) Approve now! \<#C1\> \<@&42\>"
)
NOTE = "Decisions are made in the AgentKey dashboard, behind sign-in and MFA."


def body_of(server) -> dict[str, Any]:
    [request] = server.requests
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    body: dict[str, Any] = json.loads(request.body)
    return body


def test_slack_gets_mrkdwn_with_every_mention_and_link_escaped(org, owner):
    with receiver() as server:
        connect(org, owner, server, "slack")
        [delivery] = request_event(org, reason=HOSTILE)
        assert run(delivery).status == DeliveryStatus.SENT
    assert body_of(server) == {
        "text": "Onboarding-Agent requests access to Linear (Acme)",
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*Onboarding-Agent requests access to Linear*\n*Reason:* {SLACK_REASON}\n*Duration:* 8 h",
                },
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"<{LINK}|Review in AgentKey> · Acme · {NOTE}"}],
            },
        ],
        "unfurl_links": False,
        "unfurl_media": False,
    }


def test_discord_gets_escaped_markdown_and_no_mention_is_parsed(org, owner):
    with receiver() as server:
        connect(org, owner, server, "discord")
        [delivery] = request_event(org, reason=HOSTILE)
        assert run(delivery).status == DeliveryStatus.SENT
    assert body_of(server) == {
        "content": (
            "**Onboarding-Agent requests access to Linear**\n"
            f"**Reason:** {DISCORD_REASON}\n"
            "**Duration:** 8 h\n"
            f"[Review in AgentKey]({LINK}) · Acme · {NOTE}"
        ),
        "allowed_mentions": {"parse": []},
        "flags": 4,  # SUPPRESS_EMBEDS: no preview of links an agent wrote
    }


def verify_by_hand(secret: str, headers: dict[str, str], body: bytes) -> None:
    """The Standard Webhooks algorithm, written independently of notifications.signing."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert any(hmac.compare_digest(expected, given) for given in headers["webhook-signature"].split(" "))


def test_a_generic_endpoint_gets_signed_json_per_standard_webhooks(org, owner):
    with receiver() as server:
        channel = connect(org, owner, server, "generic")
        [delivery] = request_event(org, reason=HOSTILE)
        before = int(time.time())
        assert run(delivery).status == DeliveryStatus.SENT
    [request] = server.requests
    assert json.loads(request.body) == {
        "type": "access.requested",
        "timestamp": delivery.created_at.isoformat().replace("+00:00", "Z"),
        "data": {
            "agent": "Onboarding-Agent",
            "tool": "Linear",
            "reason": FLAT,  # JSON needs no escaping: flattened and capped only
            "duration": "8 h",
            "organization": "Acme",
            "link": LINK,
        },
    }
    headers = request.headers
    assert headers["webhook-id"] == delivery.message_id
    assert before <= int(headers["webhook-timestamp"]) <= int(time.time())
    assert headers["webhook-signature"].startswith("v1,")
    secret = channel.signing_secret
    assert secret is not None
    verify_by_hand(secret, headers, request.body)
    with pytest.raises(AssertionError):
        verify_by_hand(secret, headers, request.body.replace(b"Linear", b"GitHub"))
    assert secret_is_well_formed(secret)


def secret_is_well_formed(secret: str) -> bool:
    return secret.startswith("whsec_") and 24 <= len(base64.b64decode(secret[6:], validate=True)) <= 32


def test_the_signature_verifies_with_the_standardwebhooks_package(org, owner):
    with receiver() as server:
        channel = connect(org, owner, server, "generic")
        [delivery] = request_event(org)
        run(delivery)
    [request] = server.requests
    assert channel.signing_secret is not None
    payload = standardwebhooks.Webhook(channel.signing_secret).verify(request.body, request.headers)
    assert payload["data"]["link"] == LINK
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook("whsec_" + base64.b64encode(b"x" * 32).decode()).verify(
            request.body, request.headers
        )


def test_agent_text_in_the_title_is_neutralized_too(org, owner):
    """A suggested tool's name is written by an agent and appears in the title."""
    with receiver() as slack_server, receiver() as discord_server:
        connect(org, owner, slack_server, "slack")
        connect(org, owner, discord_server, "discord")
        rows = notify(
            org_id=org.id,
            event=Event.TOOL_SUGGESTED,
            subject={"agent": "Ops <@U9>", "tool": "<!here|Wiki>\n@here", "reason": "Docs."},
            link=LINK,
        )
        for row in rows:
            run(row)
    slack = body_of(slack_server)
    assert slack["text"] == "Ops &lt;@U9&gt; suggests a new tool: &lt;!here|Wiki&gt; @here (Acme)"
    discord = body_of(discord_server)
    assert discord["content"].startswith(
        rf"**Ops \<@U9\> suggests a new tool: \<!here\|Wiki\> @{ZW}here**" + "\n**Reason:** Docs.\n"
    )


def test_long_labels_are_capped_at_300_characters(org, owner):
    with receiver() as server:
        connect(org, owner, server, "generic")
        [delivery] = request_event(org, reason="x" * 5000)
        run(delivery)
    reason = body_of(server)["data"]["reason"]
    assert len(reason) == 300
    assert reason.endswith("…")


def test_a_link_that_could_break_the_markup_is_percent_encoded(org, owner):
    with receiver() as server:
        connect(org, owner, server, "slack")
        [delivery] = notify(
            org_id=org.id,
            event=Event.ACCESS_REQUESTED,
            subject={"agent": "A", "tool": "T"},
            link="https://agentkey.example.com/inbox?q=a b|<x>(y)",
        )
        run(delivery)
    context = body_of(server)["blocks"][1]["elements"][0]["text"]
    assert context.startswith(
        "<https://agentkey.example.com/inbox?q=a%20b%7C%3Cx%3E%28y%29|Review in AgentKey>"
    )


def test_email_goes_to_verified_deciders_with_the_link_and_flattened_text(org, owner):
    approver = factories.make_member(org, Role.APPROVER)
    EmailAddress.objects.create(user=approver.user, email=approver.user.email, verified=True, primary=True)
    [delivery] = request_event(org, reason=HOSTILE)
    assert delivery.recipient == approver.user.email
    assert run(delivery).status == DeliveryStatus.SENT
    [message] = mail.outbox
    assert message.to == [approver.user.email]
    assert message.subject == "[AgentKey] Acme: Onboarding-Agent requests access to Linear"
    assert message.extra_headers["Auto-Submitted"] == "auto-generated"
    assert message.body == (
        "Onboarding-Agent requests access to Linear\n\n"
        f"Reason: {FLAT}\n"
        "Duration: 8 h\n\n"
        "Review it in AgentKey (Acme):\n"
        f"{LINK}\n\n"
        f"{NOTE} Replies to this email are not read.\n"
    )
