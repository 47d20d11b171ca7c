"""End to end with a real Redis broker, Celery worker and beat: an access request made while the
broker is down is answered at once, and its notification arrives after the broker returns."""

from __future__ import annotations

import json
import time

import pytest

from notifications.models import Delivery, DeliveryStatus, Event
from notifications.services import delivery_send_test
from tests.notifications.conftest import connect, receiver, wait_for
from tests.notifications.processes import celery, celery_env, redis_server, this_process_publishes_to

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("loopback")]


def events_received(server) -> list[str]:
    return [json.loads(r.body)["type"] for r in server.requests]


def test_nothing_is_lost_when_the_broker_is_down_during_a_request(org, owner, api, tool, settings, tmp_path):
    settings.AGENTKEY_NOTIFICATIONS_DISPATCH = "background"
    with (
        receiver() as server,
        redis_server(tmp_path / "redis.log") as broker,
        this_process_publishes_to(broker.url),
    ):
        env = celery_env(
            broker.url,
            AGENTKEY_NOTIFICATIONS_SWEEP_SECONDS="1",
            AGENTKEY_NOTIFICATIONS_REDELIVER_AFTER="1",
        )
        worker_cmd = ["worker", "--pool", "solo", "-l", "info", "--without-gossip", "--without-mingle"]
        beat_cmd = ["beat", "-l", "info", "--schedule", str(tmp_path / "beat-schedule")]
        with (
            celery(worker_cmd, env, tmp_path / "worker.log"),
            celery(beat_cmd, env, tmp_path / "beat.log"),
        ):
            connect(org, owner, server, "generic")
            try:
                # The worker is up and the path works: a test notification goes through.
                delivery_send_test(endpoint=org.webhook_endpoints.get(), actor=owner)
                wait_for(lambda: events_received(server) == [Event.TEST], timeout=60, every=0.2)

                broker.stop()
                started = time.monotonic()
                response = api.request_access(tool.id)
                took = time.monotonic() - started
                assert response.status_code == 201
                assert took < 1.0, f"the request took {took:.2f} s with the broker down"
                delivery = Delivery.objects.get(event=Event.ACCESS_REQUESTED)
                assert delivery.status == DeliveryStatus.PENDING
                time.sleep(3)  # the publish has failed by now; the worker and beat see no broker
                assert events_received(server) == [Event.TEST]
                delivery.refresh_from_db()
                assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 0)

                broker.start()
                wait_for(lambda: Event.ACCESS_REQUESTED in events_received(server), timeout=90, every=0.2)
                wait_for(
                    lambda: Delivery.objects.get(id=delivery.id).status == DeliveryStatus.SENT, timeout=10
                )
                time.sleep(3)  # a few more sweeps: nothing is sent twice
            except BaseException:
                for name in ("worker.log", "beat.log"):
                    print(f"--- {name}\n{(tmp_path / name).read_text()[-4000:]}")  # noqa: T201
                raise
    assert events_received(server) == [Event.TEST, Event.ACCESS_REQUESTED]
    delivery.refresh_from_db()
    assert delivery.attempts == 1
