"""The outbox: atomic claims, retries with backoff, permanent failures, timeouts, the sweep job."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.models import Delivery, DeliveryStatus, Event
from notifications.services import (
    BACKOFF_SECONDS,
    MAX_ATTEMPTS,
    deliveries_sweep,
    delivery_attempt,
    delivery_send_test,
    endpoint_set_enabled,
)
from notifications.tasks import sweep_deliveries
from tests.notifications.conftest import connect, receiver, request_event, run, status

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loopback")]


def advance_to(time_machine, delivery: Delivery) -> None:
    """Jump to just after the delivery's next attempt is due (the task would be waiting till then)."""
    assert delivery.next_attempt_at is not None
    time_machine.move_to(delivery.next_attempt_at + timedelta(seconds=1), tick=False)


def test_500_three_times_then_200_is_one_accepted_delivery_after_four_attempts(org, owner, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    with receiver(status(500), status(500), status(500), status(200)) as server:
        connect(org, owner, server, "generic")
        [delivery] = request_event(org)
        waits = []
        for attempt in (1, 2, 3):
            failed_at = timezone.now()
            delivery = run(delivery)
            assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", attempt, 500)
            assert delivery.last_error == "The endpoint answered HTTP 500."
            assert delivery.next_attempt_at is not None
            waits.append((delivery.next_attempt_at - failed_at).total_seconds())
            assert run(delivery).attempts == attempt, "not due yet: the task does nothing"
            advance_to(time_machine, delivery)
        delivery = run(delivery)
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("sent", 4, 200)
        assert delivery.last_error == ""
        assert delivery.next_attempt_at is None
        assert delivery.sent_at is not None
        assert run(delivery).attempts == 4, "a sent delivery is never sent again"
    assert len(server.requests) == 4
    assert len({r.headers["webhook-id"] for r in server.requests}) == 1, "the same message id on every retry"
    assert {json.loads(r.body)["type"] for r in server.requests} == {"access.requested"}
    for wait, base in zip(waits, BACKOFF_SECONDS, strict=False):
        assert base * 0.8 <= wait <= base * 1.2


@pytest.mark.parametrize("code", [400, 401, 403, 404, 410, 422])
def test_a_permanent_4xx_is_dead_after_one_attempt(org, owner, code):
    with receiver(status(code)) as server:
        connect(org, owner, server, "slack")
        [delivery] = request_event(org)
        delivery = run(delivery)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("dead", 1, code)
    assert delivery.last_error == f"The endpoint answered HTTP {code}; not retried (is the URL still valid?)."
    assert delivery.next_attempt_at is None
    assert len(server.requests) == 1


@pytest.mark.parametrize("code", [408, 429, 500, 502, 503])
def test_timeouts_rate_limits_and_server_errors_are_retried(org, owner, code):
    with receiver(status(code)) as server:
        connect(org, owner, server, "discord")
        [delivery] = request_event(org)
        delivery = run(delivery)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, code)
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at > timezone.now()


def test_retry_after_is_honoured_when_longer_than_the_backoff(org, owner):
    with receiver(status(429, retry_after="900")) as server:
        connect(org, owner, server, "slack")
        [delivery] = request_event(org)
        before = timezone.now()
        delivery = run(delivery)
    assert delivery.status == "failed"
    assert delivery.next_attempt_at is not None
    assert timedelta(seconds=899) <= delivery.next_attempt_at - before <= timedelta(seconds=902)


def test_a_hanging_receiver_is_a_timeout_failure_not_a_stuck_delivery(org, owner, settings):
    settings.AGENTKEY_NOTIFICATIONS_TIMEOUT = 1
    with receiver(status(200), delay=3) as server:
        connect(org, owner, server, "generic")
        [delivery] = request_event(org)
        started = time.monotonic()
        delivery = run(delivery)
        took = time.monotonic() - started
    assert took < 2.5
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert delivery.last_error == "The server did not answer within 1 seconds."
    assert delivery.claimed_at is None


def test_after_the_last_attempt_the_delivery_is_dead(org, owner):
    with receiver(status(503)) as server:
        connect(org, owner, server, "generic")
        [delivery] = request_event(org)
        Delivery.objects.filter(id=delivery.id).update(attempts=MAX_ATTEMPTS - 1)
        delivery = run(delivery)
    assert (delivery.status, delivery.attempts) == ("dead", MAX_ATTEMPTS)
    assert delivery.last_error == f"The endpoint answered HTTP 503. Gave up after {MAX_ATTEMPTS} attempts."


def test_about_nine_attempts_over_about_a_day():
    assert MAX_ATTEMPTS == 9
    assert 20 * 3600 <= sum(BACKOFF_SECONDS) <= 26 * 3600


def test_a_delivery_claimed_by_another_worker_is_left_alone(org, owner):
    with receiver() as server:
        connect(org, owner, server, "slack")
        [delivery] = request_event(org)
        Delivery.objects.filter(id=delivery.id).update(
            status=DeliveryStatus.SENDING, claimed_at=timezone.now()
        )
        assert delivery_attempt(delivery_id=delivery.id).status == "skipped"
    assert server.requests == []


def test_a_delivery_that_is_gone_is_skipped_quietly(org):
    import uuid

    assert delivery_attempt(delivery_id=uuid.uuid4()).status == "skipped"


def test_a_paused_channel_gets_nothing_but_its_test_message(org, owner):
    with receiver() as server:
        channel = connect(org, owner, server, "slack")
        [delivery] = request_event(org)
        endpoint_set_enabled(endpoint=channel.endpoint, actor=owner, enabled=False)
        delivery = run(delivery)
        assert (delivery.status, delivery.last_error) == (
            "dead",
            "The channel is paused; the message was not sent.",
        )
        assert request_event(org) == [], "a paused channel gets no new deliveries"
        test = run(delivery_send_test(endpoint=channel.endpoint, actor=owner))
    assert test.status == "sent"
    [request] = server.requests
    assert json.loads(request.body)["text"].startswith("Test notification for #slack")


def test_the_url_rules_apply_again_at_send_time(org, owner, settings):
    """A Slack channel's URL must still pass the Slack rules when sending (here: loopback no longer allowed)."""
    with receiver() as server:
        connect(org, owner, server, "slack")
        [delivery] = request_event(org)
        settings.AGENTKEY_ALLOW_LOOPBACK_URLS = False
        delivery = run(delivery)
    assert delivery.status == "dead"
    assert delivery.last_error == "The webhook URL must start with https://."
    assert server.requests == []


# --- the sweep job -------------------------------------------------------------------------------


def test_the_sweep_resets_a_delivery_stuck_in_sending(org, owner):
    with receiver() as server:
        connect(org, owner, server, "generic")
        [delivery] = request_event(org)
    Delivery.objects.filter(id=delivery.id).update(
        status=DeliveryStatus.SENDING, attempts=2, claimed_at=timezone.now() - timedelta(minutes=6)
    )
    swept = deliveries_sweep()
    assert swept.requeue == [delivery.id]
    assert swept.reset == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 2)
    assert delivery.last_error == "The worker stopped while sending (attempt 2); trying again."


def test_a_delivery_stuck_on_its_last_attempt_is_dead(org, owner):
    with receiver() as server:
        connect(org, owner, server, "generic")
        [delivery] = request_event(org)
    Delivery.objects.filter(id=delivery.id).update(
        status=DeliveryStatus.SENDING, attempts=MAX_ATTEMPTS, claimed_at=timezone.now() - timedelta(minutes=6)
    )
    assert deliveries_sweep().gave_up == 1
    delivery.refresh_from_db()
    assert delivery.status == "dead"
    assert delivery.last_error.endswith(f"Gave up after {MAX_ATTEMPTS} attempts.")


def test_a_recent_sending_row_is_not_taken_for_a_dead_worker(org, owner):
    with receiver() as server:
        connect(org, owner, server, "generic")
        [delivery] = request_event(org)
    Delivery.objects.filter(id=delivery.id).update(status=DeliveryStatus.SENDING, claimed_at=timezone.now())
    assert deliveries_sweep().requeue == []


def test_the_sweep_queues_again_what_a_broker_outage_lost_once_per_interval(org, owner, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    with receiver() as server:
        connect(org, owner, server, "generic")
        [delivery] = request_event(org)
    assert deliveries_sweep().requeue == [], "just written: its task is probably on its way"
    time_machine.shift(timedelta(seconds=61))
    assert deliveries_sweep().requeue == [delivery.id]
    time_machine.shift(timedelta(seconds=61))
    assert deliveries_sweep().requeue == [], "queued a minute ago: not again yet"
    time_machine.shift(timedelta(minutes=5))
    assert deliveries_sweep().requeue == [delivery.id]


def test_the_sweep_prunes_old_sent_and_dead_rows(org, owner, time_machine):
    with receiver() as server:
        connect(org, owner, server, "generic")
        [old] = request_event(org)
        [recent] = request_event(org)
        [waiting] = request_event(org)
        run(old)
        run(recent)
    Delivery.objects.filter(id__in=[old.id, waiting.id]).update(
        created_at=timezone.now() - timedelta(days=31)
    )
    Delivery.objects.filter(id=waiting.id).update(status=DeliveryStatus.FAILED)
    assert deliveries_sweep().pruned == 1
    assert set(Delivery.objects.values_list("id", flat=True)) == {recent.id, waiting.id}


def test_the_sweep_task_queues_nothing_in_manual_mode(org, owner):
    assert sweep_deliveries() == {"queued": 0, "reset": 0, "gave_up": 0, "pruned": 0}


def test_events_without_subscribers_write_nothing(org, owner):
    with receiver() as server:
        connect(org, owner, server, "generic", events=["access.approved"])
    assert request_event(org) == []
    assert Delivery.objects.filter(event=Event.ACCESS_REQUESTED).count() == 0
