"""The limiter's cost on the hot path (issue #7): one Redis round trip per tier, same counters."""

from __future__ import annotations

import zlib
from typing import Any

import django_ratelimit.core
import pytest
import redis.connection
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.test import RequestFactory

from agentkey.core import ratelimit
from agentkey.core.errors import RateLimited
from grants.services import grant_assign

pytestmark = pytest.mark.django_db


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write to a Redis socket (one per command, or one per pipeline)."""
    sent: list[bytes] = []
    original = redis.connection.AbstractConnection.send_packed_command

    def spy(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(b"".join(command) if isinstance(command, list) else bytes(command))
        original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", spy)
    return sent


def test_a_vend_costs_two_redis_round_trips(api, agent, tool, operator, round_trips):
    grant_assign(agent=agent, tool=tool, actor=operator)
    api.credentials(tool.id)  # warm: connections opened
    round_trips.clear()
    response = api.credentials(tool.id)
    assert response.status_code == 200
    assert len(round_trips) == 2, "the pre-auth tier and the credential tier, one MULTI/EXEC each"
    assert all(b"MULTI" in sent and b"INCR" in sent for sent in round_trips)
    assert int(response["X-RateLimit-Remaining"]) == 60 - 2


def test_the_count_is_shared_windowed_and_refuses_over_the_limit(settings, round_trips):
    settings.AGENTKEY_RATELIMITS = {**settings.AGENTKEY_RATELIMITS, "read": "3/m"}
    request = RequestFactory().get("/api/tools")
    states = [ratelimit.hit(request, tier="read", key="agent:round-trips") for _ in range(3)]
    assert [s.remaining for s in states] == [2, 1, 0]
    with pytest.raises(RateLimited) as refused:
        ratelimit.hit(request, tier="read", key="agent:round-trips")
    assert 1 <= refused.value.retry_after <= 60
    # The counter is a plain Redis integer with the window's expiry: any process sees it.
    client: Any = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    keys = [k for k in client.scan_iter("agentkey-test:*:rl:*") if client.get(k) == b"4"]
    assert len(keys) == 1
    assert 0 < client.ttl(keys[0]) <= 60 + 5
    # A second backend with its own connections (as in another process) counts on the same key.
    other = caches.create_connection("default")
    assert isinstance(other, RedisCache)
    assert other is not caches["default"]
    usage = ratelimit._redis_usage(
        other, group="agentkey.read", key="agent:round-trips", rate=ratelimit.Rate(3, 60)
    )
    assert usage["count"] == 5
    assert usage["should_limit"]
    assert client.get(keys[0]) == b"5"


def test_a_non_redis_cache_still_counts(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    settings.AGENTKEY_RATELIMITS = {**settings.AGENTKEY_RATELIMITS, "read": "2/m"}
    request = RequestFactory().get("/api/tools")
    assert ratelimit.hit(request, tier="read", key="agent:locmem").remaining == 1
    assert ratelimit.hit(request, tier="read", key="agent:locmem").remaining == 0
    with pytest.raises(RateLimited):
        ratelimit.hit(request, tier="read", key="agent:locmem")


class SteppingClock:
    """``time.time()`` that moves ``step`` seconds at every reading."""

    def __init__(self, start: float, step: float) -> None:
        self.now, self.step = start - step, step

    def time(self) -> float:
        self.now += self.step
        return self.now


@pytest.mark.parametrize("backend", ["redis", "locmem"])
def test_a_count_straddling_the_end_of_its_window_is_not_a_limiter_outage(settings, monkeypatch, backend):
    """The window ends at a per-key second; a count that reads the clock on both sides of it
    used to get django-ratelimit's failure value and answer 503 to a credential fetch."""
    if backend == "locmem":
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    key = f"agent:straddle-{backend}"
    minute = 1_800_000_000 - 1_800_000_000 % 60
    window_end = minute + zlib.crc32(key.encode()) % 60
    clock = SteppingClock(start=window_end - 0.5, step=2.0)
    monkeypatch.setattr(ratelimit, "time", clock)
    monkeypatch.setattr(django_ratelimit.core, "time", clock)
    state = ratelimit.hit(RequestFactory().get("/api/tools/x/credentials"), tier="credential", key=key)
    assert state.remaining == 60 - 1
    assert state.reset >= 1
