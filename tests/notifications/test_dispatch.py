"""Nothing an agent does waits on a webhook: the request answers before the receiver does, and a
broker that is down costs it nothing."""

from __future__ import annotations

import logging
import time

import pytest

from notifications.models import Delivery, DeliveryStatus
from tests.notifications.conftest import connect, receiver, status, wait_for
from tests.notifications.processes import free_port, this_process_publishes_to

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("loopback")]


@pytest.fixture
def background(settings):
    settings.AGENTKEY_NOTIFICATIONS_DISPATCH = "background"


@pytest.mark.usefixtures("background")
def test_without_a_broker_a_background_thread_sends_after_the_request(org, owner, api, tool):
    with receiver(status(200), delay=1.5) as server:
        connect(org, owner, server, "generic")
        started = time.monotonic()
        response = api.request_access(tool.id)
        took = time.monotonic() - started
        assert response.status_code == 201
        assert took < 1.0, f"the request waited {took:.2f} s for the receiver"
        delivery = Delivery.objects.get()
        assert delivery.status in (DeliveryStatus.PENDING, DeliveryStatus.SENDING)
        wait_for(lambda: Delivery.objects.get().status == DeliveryStatus.SENT, timeout=10)
    assert len(server.requests) == 1


@pytest.mark.usefixtures("background")
def test_an_unreachable_broker_does_not_slow_or_break_the_request(org, owner, api, tool, caplog):
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"
    with receiver() as server, this_process_publishes_to(dead_broker), caplog.at_level(logging.WARNING):
        connect(org, owner, server, "generic")
        started = time.monotonic()
        response = api.request_access(tool.id)
        took = time.monotonic() - started
        assert response.status_code == 201
        assert took < 0.5, f"the request took {took:.2f} s"
        delivery = Delivery.objects.get()
        wait_for(lambda: "the sweep job will queue it again" in caplog.text, timeout=15)
        assert f"Could not queue notification delivery {delivery.id}" in caplog.text
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 0)
    assert server.requests == []
