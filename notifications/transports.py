"""One transport per channel, all behind ``agentkey.core.http`` (STYLE §6).

The HTTP client checks every address after DNS resolution and on every redirect
hop, pins the connection to the checked address, caps the response and bounds
the whole exchange; here each channel builds its body and classifies the answer.
A transport raises :class:`DeliveryError` with ``permanent`` set when trying again
cannot help (most 4xx answers, a refused address, a URL that is no longer a Slack
or Discord one); otherwise the delivery is retried with backoff.

Error texts end up on the dashboard and in the admin, so they never contain the
webhook URL (a credential) or anything the receiver answered: every URL in a
message is cut back to its scheme and host.
"""

from __future__ import annotations

import abc
import json
import re
import smtplib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urljoin

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.template.loader import render_to_string

from agentkey.core import http
from agentkey.core.errors import ValidationFailed
from notifications import neutralize
from notifications.messages import DASHBOARD_NOTE, REVIEW, Notice
from notifications.models import ChannelKind, DeliveryChannel
from notifications.services.endpoints import clean_url
from notifications.signing import BadSigningSecret, signed_headers

ERROR_LIMIT = 300
RESPONSE_LIMIT = 64 * 1024
MAX_REDIRECTS = 3
DISCORD_CONTENT_LIMIT = 2000
DISCORD_SUPPRESS_EMBEDS = 1 << 2
EMAIL_SUBJECT_PREFIX = "[AgentKey] "
RETRY_AFTER_CAP = 3600.0

_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*)://([a-z0-9\[][^\s/?#'\"<>,]*)[^\s'\"<>,]*")


def scrub(text: str, *secrets: str) -> str:
    """``text`` without the given secret values, with every URL cut back to scheme://host/…, capped."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")

    def cut(match: re.Match[str]) -> str:
        host = match.group(2).rsplit("@", 1)[-1]  # never user:password@
        return f"{match.group(1)}://{host}/…"

    text = _URL.sub(cut, text)
    return text if len(text) <= ERROR_LIMIT else text[: ERROR_LIMIT - 1] + "…"


class DeliveryError(Exception):
    """A delivery attempt failed. ``reason`` is safe to show (scrubbed, short)."""

    def __init__(
        self,
        reason: str,
        *,
        permanent: bool,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.status_code = status_code
        self.retry_after = retry_after


@dataclass(frozen=True)
class Outgoing:
    """Everything one attempt needs. The URL and the signing secret never appear in its repr."""

    notice: Notice
    message_id: str
    created_at: datetime
    url: str = field(default="", repr=False)
    signing_secret: str = field(default="", repr=False)
    recipient: str = ""


@dataclass(frozen=True)
class Sent:
    status_code: int | None = None


class Transport(abc.ABC):
    channel: ClassVar[str]

    @abc.abstractmethod
    def send(self, outgoing: Outgoing) -> Sent: ...


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # an HTTP date: the backoff schedule is used instead
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


class WebhookTransport(Transport):
    """POST a JSON body through the safe HTTP client and classify the answer."""

    kind: ClassVar[str]

    @abc.abstractmethod
    def body(self, outgoing: Outgoing) -> dict[str, Any]: ...

    def extra_headers(self, outgoing: Outgoing, body: bytes) -> dict[str, str]:
        return {}

    def check(self, outgoing: Outgoing) -> None:
        """Send-time URL rules (the Slack and Discord host allowlists), as at save time."""
        try:
            clean_url(kind=self.kind, url=outgoing.url)
        except ValidationFailed as exc:
            raise DeliveryError(exc.error, permanent=True) from None

    def send(self, outgoing: Outgoing) -> Sent:
        self.check(outgoing)
        body = json.dumps(self.body(outgoing), ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", **self.extra_headers(outgoing, body)}
        try:
            response = http.request(
                "POST",
                outgoing.url,
                headers=headers,
                body=body,
                timeout=float(settings.AGENTKEY_NOTIFICATIONS_TIMEOUT),
                max_bytes=RESPONSE_LIMIT,
                max_redirects=MAX_REDIRECTS,
                https_only=True,
            )
        except http.UnsafeURL as exc:
            # A host that does not resolve may be a passing DNS problem; any other refusal is final.
            transient = exc.message.hint == http.UNRESOLVABLE.hint
            raise DeliveryError(scrub(exc.error, outgoing.url), permanent=not transient) from None
        except http.FetchFailed as exc:
            raise DeliveryError(scrub(exc.message.error, outgoing.url), permanent=False) from None
        return self.outcome(response, outgoing)

    def outcome(self, response: http.Response, outgoing: Outgoing) -> Sent:
        status = response.status
        if 200 <= status < 300:
            return Sent(status_code=status)
        if status in (301, 302, 303, 307, 308):
            raise DeliveryError(self._redirect_reason(response, outgoing), permanent=True, status_code=status)
        if status in (408, 429):
            raise DeliveryError(
                f"The endpoint answered HTTP {status}; trying again later.",
                permanent=False,
                status_code=status,
                retry_after=_retry_after(response.headers.get("retry-after")),
            )
        if 400 <= status < 500:
            raise DeliveryError(
                f"The endpoint answered HTTP {status}; not retried (is the URL still valid?).",
                permanent=True,
                status_code=status,
            )
        raise DeliveryError(f"The endpoint answered HTTP {status}.", permanent=False, status_code=status)

    @staticmethod
    def _redirect_reason(response: http.Response, outgoing: Outgoing) -> str:
        """Redirects of a POST are not followed (only 307/308 keep the method, and the client
        follows those itself); say why, and name a refused target the way the client would."""
        location = response.headers.get("location", "")
        if location:
            target = urljoin(response.url, location)
            # The address first: "a private address" says more than "not https".
            for https_only in (False, True):
                try:
                    http.check_url(target, https_only=https_only)
                except http.UnsafeURL as exc:
                    message = http.REDIRECTED_AWAY.format(target=target[:200], reason=exc.error)
                    return scrub(message.error, outgoing.url)
        return scrub(
            f"The endpoint answered HTTP {response.status}, a redirect, which webhooks do not follow; "
            "use the final URL.",
            outgoing.url,
        )


def _slack_link(link: str) -> str:
    return link.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")


class SlackTransport(WebhookTransport):
    """Slack incoming webhook: mrkdwn with Slack's escaping; no unfurling of agent-written links."""

    channel = DeliveryChannel.SLACK
    kind = ChannelKind.SLACK

    def body(self, outgoing: Outgoing) -> dict[str, Any]:
        notice = outgoing.notice
        title = notice.title(neutralize.slack)
        org = neutralize.slack(notice.org)
        lines = [f"*{title}*", *(f"*{label}:* {value}" for label, value in notice.fields(neutralize.slack))]
        return {
            "text": f"{title} ({org})",
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
                {
                    "type": "context",
                    "elements": [
                        {
                            "type": "mrkdwn",
                            "text": f"<{_slack_link(notice.link)}|{REVIEW}> · {org} · {DASHBOARD_NOTE}",
                        }
                    ],
                },
            ],
            "unfurl_links": False,
            "unfurl_media": False,
        }


class DiscordTransport(WebhookTransport):
    """Discord webhook: escaped markdown, no mentions parsed at all, no link previews."""

    channel = DeliveryChannel.DISCORD
    kind = ChannelKind.DISCORD

    def body(self, outgoing: Outgoing) -> dict[str, Any]:
        notice = outgoing.notice
        lines = [
            f"**{notice.title(neutralize.discord)}**",
            *(f"**{label}:** {value}" for label, value in notice.fields(neutralize.discord)),
        ]
        footer = f"[{REVIEW}]({notice.link}) · {neutralize.discord(notice.org)} · {DASHBOARD_NOTE}"
        content = "\n".join(lines)
        room = DISCORD_CONTENT_LIMIT - len(footer) - 1
        if len(content) > room:
            content = content[: room - 1] + "…"
        return {
            "content": f"{content}\n{footer}",
            "allowed_mentions": {"parse": []},
            "flags": DISCORD_SUPPRESS_EMBEDS,
        }


class GenericTransport(WebhookTransport):
    """Any HTTPS endpoint: a JSON body signed per Standard Webhooks."""

    channel = DeliveryChannel.GENERIC
    kind = ChannelKind.GENERIC

    def body(self, outgoing: Outgoing) -> dict[str, Any]:
        created = outgoing.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return {"type": outgoing.notice.event, "timestamp": created, "data": outgoing.notice.data()}

    def extra_headers(self, outgoing: Outgoing, body: bytes) -> dict[str, str]:
        if not outgoing.signing_secret:
            raise DeliveryError(
                "This channel has no signing secret. Rotate it on the notifications page.", permanent=True
            )
        try:
            return signed_headers(
                secret=outgoing.signing_secret,
                message_id=outgoing.message_id,
                timestamp=int(time.time()),
                body=body,
            )
        except BadSigningSecret:
            raise DeliveryError(
                "The stored signing secret is not valid. Rotate it on the notifications page.", permanent=True
            ) from None


class EmailTransport(Transport):
    """Plain-text email through Django's backend (SMTP in production)."""

    channel = DeliveryChannel.EMAIL

    def send(self, outgoing: Outgoing) -> Sent:
        notice = outgoing.notice
        subject = neutralize.flatten(f"{EMAIL_SUBJECT_PREFIX}{notice.org}: {notice.title()}", limit=200)
        context = {
            "notice": notice,
            "org": neutralize.flatten(notice.org),
            "title": notice.title(),
            "fields": notice.fields(),
            "note": DASHBOARD_NOTE,
        }
        message = EmailMessage(
            subject=subject,
            body=render_to_string("email/notification.txt", context),
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[outgoing.recipient],
            headers={"Auto-Submitted": "auto-generated", "X-AgentKey-Message-Id": outgoing.message_id},
            connection=get_connection(timeout=float(settings.AGENTKEY_NOTIFICATIONS_TIMEOUT)),
        )
        try:
            message.send()
        except smtplib.SMTPRecipientsRefused:
            raise DeliveryError("The mail server refused the recipient address.", permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                f"The mail server could not take the message ({type(exc).__name__}).", permanent=False
            ) from None
        return Sent()


TRANSPORTS: Mapping[str, Transport] = {
    transport.channel: transport
    for transport in (SlackTransport(), DiscordTransport(), GenericTransport(), EmailTransport())
}
