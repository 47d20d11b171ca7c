"""Rate-limit tiers on the Django cache (Redis in production).

django-ratelimit defines the fixed-window counters (keys, staggered windows);
this module adds the tiers of DESIGN §4, the ``X-RateLimit-*`` headers and
the 429 error. On Redis a count is one round trip (see :func:`_redis_usage`).
"""

from __future__ import annotations

import functools
import re
import time
import zlib
from dataclasses import dataclass
from typing import Any

import redis
import redis.exceptions
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest
from django_ratelimit.core import EXPIRATION_FUDGE, _make_cache_key, get_usage

from agentkey.core.errors import RATE_LIMITED, RATE_LIMITER_DOWN, RateLimited, Unavailable

_RATE = re.compile(r"^(\d+)/(\d*)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

TIERS = ("preauth", "read", "credential", "request", "admin")


@dataclass(frozen=True)
class Rate:
    limit: int
    period: int  # seconds

    @classmethod
    def parse(cls, value: str) -> Rate:
        """Parse ``60/m``, ``10/h``, ``100/5m``; raise ValueError otherwise."""
        match = _RATE.match(value.strip())
        if not match:
            raise ValueError(f"invalid rate {value!r}; use forms like 60/m, 10/h, 100/5m")
        count, multiplier, unit = match.groups()
        period = _SECONDS[unit] * (int(multiplier) if multiplier else 1)
        if int(count) < 1 or period < 1:
            raise ValueError(f"invalid rate {value!r}; the count and period must be positive")
        return cls(limit=int(count), period=period)

    def as_ratelimit(self) -> tuple[int, int]:
        return (self.limit, self.period)


@dataclass(frozen=True)
class RateLimitState:
    tier: str
    limit: int
    period: int
    remaining: int
    reset: int  # seconds until the window resets

    def headers(self) -> dict[str, str]:
        """The original AgentKey's headers: Reset is the absolute end of the
        window in epoch milliseconds; Policy is ``<limit>;w=<seconds>``."""
        reset_at_ms = (int(time.time()) + self.reset) * 1000
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(reset_at_ms),
            "X-RateLimit-Policy": f"{self.limit};w={self.period}",
        }


@functools.lru_cache(maxsize=64)
def _parsed(value: str) -> Rate:
    return Rate.parse(value)


def rate_for(tier: str) -> Rate:
    return _parsed(settings.AGENTKEY_RATELIMITS[tier])


def _window_end(key: str, period: int, now: int) -> int:
    """django-ratelimit's window (``_get_window``: staggered per key by CRC-32), from one
    clock reading. ``get_usage`` reads the clock again for ``time_left``: a count that
    straddles the second at which the window ends got -1, its failure value (a 503)."""
    if period == 1:
        return now
    end = now - (now % period) + (zlib.crc32(key.encode("utf-8")) % period)
    return end + period if end < now else end


def _redis_usage(backend: RedisCache, *, group: str, key: str, rate: Rate) -> dict[str, Any]:
    """django-ratelimit's counter (same key, same staggered window) in one round trip.

    ``get_usage`` costs three on Django's Redis cache (SET NX, then EXISTS and INCRBY) and
    builds a client per command; here SET NX EX and INCR go in one MULTI/EXEC, on a
    client made once per cache backend (per thread), and the count is atomic.
    """
    now = int(time.time())
    window = _window_end(key, rate.period, now)
    cache_key = backend.make_and_validate_key(_make_cache_key(group, window, rate.as_ratelimit(), key, None))
    client: redis.Redis | None = getattr(backend, "_agentkey_ratelimit_client", None)
    if client is None:
        client = backend._cache.get_client(cache_key, write=True)
        backend._agentkey_ratelimit_client = client  # type: ignore[attr-defined]
    pipe = client.pipeline(transaction=True)
    pipe.set(cache_key, 0, ex=rate.period + EXPIRATION_FUDGE, nx=True)
    pipe.incr(cache_key)
    count = int(pipe.execute()[1])
    return {
        "count": count,
        "limit": rate.limit,
        "should_limit": count > rate.limit,
        "time_left": window - now,  # the same clock reading: never negative
    }


def _usage(request: HttpRequest, *, tier: str, key: str, rate: Rate) -> dict[str, Any] | None:
    """Count one hit; ``None`` when rate limiting is disabled (RATELIMIT_ENABLE = False)."""
    group = f"agentkey.{tier}"
    backend = caches[settings.RATELIMIT_USE_CACHE]
    if isinstance(backend, RedisCache) and getattr(settings, "RATELIMIT_ENABLE", True):
        return _redis_usage(backend, group=group, key=key, rate=rate)
    usage: dict[str, Any] | None = get_usage(
        request,
        group=group,
        key=lambda _group, _request: key,
        rate=rate.as_ratelimit(),
        increment=True,
    )
    return usage


def hit(request: HttpRequest, *, tier: str, key: str) -> RateLimitState:
    """Count one request against ``tier`` for ``key``; raise RateLimited when over.

    The counter is shared by every process using the same cache. When the
    cache cannot be reached the request fails closed with 503, except for the
    tiers listed in AGENTKEY_RATELIMIT_FAIL_OPEN_TIERS, which pass uncounted.
    """
    rate = rate_for(tier)
    unlimited = RateLimitState(tier, rate.limit, rate.period, rate.limit, rate.period)
    try:
        usage = _usage(request, tier=tier, key=key, rate=rate)
    except (redis.exceptions.RedisError, OSError):
        usage = {"count": 0, "limit": 0, "should_limit": True, "time_left": -1}
    if usage is None:  # rate limiting disabled (RATELIMIT_ENABLE = False)
        return unlimited
    if usage["limit"] == 0:  # the cache did not answer: django-ratelimit's failure shape (no real rate has 0)
        if tier in settings.AGENTKEY_RATELIMIT_FAIL_OPEN_TIERS:
            return unlimited
        raise Unavailable(RATE_LIMITER_DOWN)
    reset = max(int(usage["time_left"]), 1)
    remaining = max(rate.limit - int(usage["count"]), 0)
    state = RateLimitState(tier, rate.limit, rate.period, remaining, reset)
    if usage["should_limit"]:
        refused = RateLimited(RATE_LIMITED.format(tier=tier, retry_after=reset), retry_after=reset)
        refused.ratelimit_state = state
        raise refused
    return state
