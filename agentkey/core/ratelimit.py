"""Rate-limit tiers on the Django cache (Redis in production).

django-ratelimit keeps the fixed-window counters; this module adds the tiers
of DESIGN §4, the ``X-RateLimit-*`` headers and the 429 error.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass

import redis.exceptions
from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import get_usage

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


def hit(request: HttpRequest, *, tier: str, key: str) -> RateLimitState:
    """Count one request against ``tier`` for ``key``; raise RateLimited when over.

    The counter is shared by every process using the same cache. When the
    cache cannot be reached the request fails closed with 503, except for the
    tiers listed in AGENTKEY_RATELIMIT_FAIL_OPEN_TIERS, which pass uncounted.
    """
    rate = rate_for(tier)
    unlimited = RateLimitState(tier, rate.limit, rate.period, rate.limit, rate.period)
    try:
        usage = get_usage(
            request,
            group=f"agentkey.{tier}",
            key=lambda _group, _request: key,
            rate=rate.as_ratelimit(),
            increment=True,
        )
    except (redis.exceptions.RedisError, OSError):
        usage = {"count": 0, "limit": 0, "should_limit": True, "time_left": -1}
    if usage is None:  # rate limiting disabled (RATELIMIT_ENABLE = False)
        return unlimited
    if usage["time_left"] < 0:  # the cache did not answer: django-ratelimit's failure shape
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
