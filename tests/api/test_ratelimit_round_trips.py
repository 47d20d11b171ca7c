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


class FrozenClock:
    """``time.time()`` stopped at one instant, for both limiters."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def rate_limit_keys() -> set[bytes]:
    client: Any = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    return set(client.scan_iter("agentkey-test:*:rl:*"))


@pytest.mark.parametrize("their_rate", ["5/m", (5, 60)])
@pytest.mark.parametrize("first", ["ours", "django-ratelimit"])
def test_the_fast_path_and_django_ratelimit_count_on_one_counter_and_window(
    settings, monkeypatch, round_trips, first, their_rate
):
    """The fast path builds django-ratelimit's counter itself: ``_make_cache_key`` and
    ``EXPIRATION_FUDGE`` from django_ratelimit.core, and ``_window_end``, a one-clock-reading copy
    of its private ``_get_window``. django-ratelimit has no public API for the key or the window
    (only ``get_usage`` and ``is_ratelimited``), so they stay, and this test is their guard: if an
    upgrade changes the key, the window or the expiry, the two paths stop sharing one counter."""
    settings.AGENTKEY_RATELIMITS = {**settings.AGENTKEY_RATELIMITS, "read": "5/m"}
    key = f"agent:shared-{first}-{their_rate!r}"
    clock = FrozenClock(1_800_000_017.25)  # inside a minute: the window end is staggered per key
    monkeypatch.setattr(ratelimit, "time", clock)
    monkeypatch.setattr(django_ratelimit.core, "time", clock)

    def no_fallback(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the Redis fast path fell back to get_usage")

    monkeypatch.setattr(ratelimit, "get_usage", no_fallback)
    request = RequestFactory().get("/api/tools")

    def ours() -> tuple[int, int]:
        usage = ratelimit._usage(request, tier="read", key=key, rate=ratelimit.rate_for("read"))
        assert usage is not None
        return int(usage["count"]), int(usage["time_left"])

    def theirs() -> tuple[int, int]:
        usage = django_ratelimit.core.get_usage(
            request, group="agentkey.read", key=lambda _group, _request: key, rate=their_rate, increment=True
        )
        assert usage is not None
        return int(usage["count"]), int(usage["time_left"])

    paths = [ours, theirs] if first == "ours" else [theirs, ours]
    before = rate_limit_keys()
    round_trips.clear()
    seen = [paths[n % 2]() for n in range(6)]

    assert [count for count, _ in seen] == [1, 2, 3, 4, 5, 6], "one counter, counted by both"
    window_end = django_ratelimit.core._get_window(key, 60)
    assert {time_left for _, time_left in seen} == {window_end - int(clock.now)}, "one window, one reset"
    assert window_end % 60 != 0, "a staggered window, not the minute boundary"
    [counter] = rate_limit_keys() - before
    client: Any = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    assert client.get(counter) == b"6"
    assert 60 < client.ttl(counter) <= 60 + django_ratelimit.core.EXPIRATION_FUDGE
    assert sum(b"MULTI" in sent for sent in round_trips) == 3, "our three hits took the one-round-trip path"
    with pytest.raises(RateLimited):
        ratelimit.hit(request, tier="read", key=key)
