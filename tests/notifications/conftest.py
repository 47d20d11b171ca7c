"""Webhook URLs, receivers and deliveries for the notification suites.

Every URL is registered with the session's secret watch (the vault registers the
ones stored through it too), so a URL that leaks into a log, a response or an
exception fails the run.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from notifications.models import DEFAULT_EVENTS, Delivery, Event, WebhookEndpoint
from notifications.services import endpoint_create, notify
from notifications.signing import new_signing_secret
from notifications.tasks import deliver
from tests.support.secret_watch import WATCH
from tests.support.servers import Received, Server, serve

LINK = "https://agentkey.example.com/inbox#grant-0190c1f2"


def new_url(kind: str = "slack") -> str:
    """A fresh, realistic webhook URL of ``kind``, registered as a secret."""
    token = secrets.token_urlsafe(18)
    url = {
        "slack": f"https://hooks.slack.com/services/T{secrets.token_hex(4).upper()}/B{secrets.token_hex(4).upper()}/{token}",
        "discord": f"https://discord.com/api/webhooks/{secrets.randbelow(10**18)}/{token}",
        "generic": f"https://hooks.example.com/agentkey/{token}",
    }[kind]
    WATCH.register(url)
    WATCH.register(token)
    return url


@pytest.fixture
def webhook_url() -> Any:
    return new_url


@pytest.fixture
def loopback(settings: Any) -> None:
    """Local receivers stand in for Slack, Discord and webhook endpoints (tests only)."""
    settings.AGENTKEY_ALLOW_LOOPBACK_URLS = True


# --- receivers -----------------------------------------------------------------------------------

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Script:
    """Answers a receiver gives in turn (the last one repeats); ``delay`` seconds before each."""

    answers: list[Answer]
    delay: float = 0.0
    served: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, received: Received) -> Answer:
        with self.lock:
            answer = self.answers[min(self.served, len(self.answers) - 1)]
            self.served += 1
        if self.delay:
            time.sleep(self.delay)
        return answer


def status(code: int, **headers: str) -> Answer:
    return (code, {k.replace("_", "-"): v for k, v in headers.items()}, b"ok" if code < 300 else b"no")


@contextmanager
def receiver(*answers: Answer, delay: float = 0.0) -> Iterator[Server]:
    with serve(Script(list(answers) or [status(200)], delay=delay)) as server:
        yield server


def receiver_url(server: Server, kind: str) -> str:
    token = secrets.token_urlsafe(18)
    path = {
        "slack": f"/services/T0AGENT/B0KEY/{token}",
        "discord": f"/api/webhooks/{secrets.randbelow(10**18)}/{token}",
        "generic": f"/hooks/agentkey/{token}",
    }[kind]
    return server.url + path


@dataclass
class Channel:
    endpoint: WebhookEndpoint
    url: str
    signing_secret: str | None


def connect(
    org: Any,
    actor: Any,
    server: Server,
    kind: str,
    *,
    name: str | None = None,
    events: list[str] | None = None,
) -> Channel:
    """A channel of ``kind`` posting to ``server`` (loopback must be allowed)."""
    url = receiver_url(server, kind)
    signing = new_signing_secret() if kind == "generic" else None
    endpoint = endpoint_create(
        org=org,
        actor=actor,
        name=name or f"#{kind}-{secrets.token_hex(2)}",
        kind=kind,
        url=url,
        events=events or [str(e) for e in DEFAULT_EVENTS],
        signing_secret=signing,
    )
    return Channel(endpoint, url, signing)


def request_event(org: Any, **subject: str) -> list[Delivery]:
    """What grants.services does when an agent asks for access."""
    labels = {"agent": "Onboarding-Agent", "tool": "Linear", "reason": "To file bugs.", "duration": "8 h"}
    labels.update(subject)
    return notify(org_id=org.id, event=Event.ACCESS_REQUESTED, subject=labels, link=LINK)


def run(delivery: Delivery) -> Delivery:
    """Run the delivery task once, as a worker would, and return the row as it stands."""
    deliver(str(delivery.id))
    delivery.refresh_from_db()
    return delivery


def wait_for(check: Callable[[], Any], *, timeout: float = 10.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(every)
