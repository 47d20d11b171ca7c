"""Rate-limit tiers of DESIGN §4 on the shared cache, with their headers."""

from __future__ import annotations

import time
from typing import Any

import pytest

from grants.services import grant_assign
from tests.factories import make_agent
from tests.support.http import AgentClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def limits(settings):
    def set_limits(**tiers: str) -> None:
        settings.AGENTKEY_RATELIMITS = {**settings.AGENTKEY_RATELIMITS, **tiers}

    return set_limits


def test_every_agent_response_carries_the_rate_limit_headers(api, tool):
    for response in (
        api.tools(),
        api.me(),
        api.credentials(tool.id),
        api.request_access(tool.id),
        api.request_access(tool.id),
    ):
        assert response["X-RateLimit-Limit"]
        assert int(response["X-RateLimit-Remaining"]) >= 0
        reset_ms = int(response["X-RateLimit-Reset"])
        assert time.time() * 1000 < reset_ms <= (time.time() + 3601) * 1000, (
            "epoch milliseconds, end of window"
        )
        assert ";w=" in response["X-RateLimit-Policy"]


def test_read_tier_counts_down_then_refuses_with_retry_after(api, limits):
    limits(read="3/m")
    remaining = [int(api.tools()["X-RateLimit-Remaining"]) for _ in range(3)]
    assert remaining == [2, 1, 0]
    refused = api.me()
    assert refused.status_code == 429
    body = refused.json()
    assert body["error"] == "Rate limit exceeded. Slow down and retry later."
    assert body["hint"]
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused["X-RateLimit-Remaining"] == "0"
    assert refused["X-RateLimit-Policy"] == "3;w=60"


def test_tiers_are_counted_separately_and_per_agent(org, api, agent, tool, operator, limits):
    limits(read="2/m", credential="2/m")
    grant_assign(agent=agent, tool=tool, actor=operator)
    assert [api.tools().status_code for _ in range(3)] == [200, 200, 429]
    assert api.credentials(tool.id).status_code == 200, "the credential tier has its own budget"
    other = AgentClient(make_agent(org).key.plaintext)
    assert other.tools().status_code == 200, "another agent has its own budget"


def test_requests_and_suggestions_share_one_hourly_budget(api, tool, limits):
    limits(request="2/h")
    assert api.request_access(tool.id).status_code == 201
    assert api.suggest("Notion").status_code == 201
    refused = api.suggest_instructions(tool.id, "The project key is PLATFORM.")
    assert refused.status_code == 429
    assert refused["X-RateLimit-Policy"] == "2;w=3600"


def test_the_pre_auth_tier_limits_key_guessing_per_address(limits):
    limits(preauth="3/m")
    guesser = AgentClient("sk_agent_" + "x" * 32)
    assert [guesser.tools().status_code for _ in range(3)] == [401, 401, 401]
    assert guesser.tools().status_code == 429


def test_schema_discovery_is_counted_against_the_address_only(tool, limits):
    limits(preauth="2/m")
    anonymous = AgentClient(None)
    assert [anonymous.get("/api/tools/suggest").status_code for _ in range(3)] == [200, 200, 429]


def test_the_counter_lives_in_the_shared_cache(api, limits):
    """Two processes see one counter because it is in Redis, not in process memory."""
    from django.core.cache import cache

    limits(read="5/m")
    api.tools()
    backend: Any = cache
    keys = list(backend._cache.get_client().scan_iter("agentkey-test:*"))
    assert keys, "rate-limit counters are stored in Redis"


def test_a_limiter_outage_fails_closed_for_credentials(api, agent, tool, operator, settings):
    grant_assign(agent=agent, tool=tool, actor=operator)
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    # Django rebuilds the cache handlers when CACHES changes (setting_changed).
    refused = api.credentials(tool.id)
    assert refused.status_code == 503
    assert "credential" not in refused.json()
    settings.AGENTKEY_RATELIMIT_FAIL_OPEN_TIERS = ["preauth", "read"]
    assert api.tools().status_code == 200, "reads may be configured to pass while the cache is down"
    assert api.credentials(tool.id).status_code == 503, "credential fetches still fail closed"
