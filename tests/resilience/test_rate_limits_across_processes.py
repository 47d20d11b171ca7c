"""DESIGN §4 rate limits held by Redis across two separate `make serve` processes.

Two production web processes (gunicorn, production settings) share one
database and one private redis-server. Server A is configured with the
defaults (every tier fails closed when Redis is down); server B lists the
read tiers in AGENTKEY_RATELIMIT_FAIL_OPEN_TIERS. TRUSTED_PROXY_COUNT=1 on
both: each test speaks as a different client behind the proxy (the rightmost
X-Forwarded-For entry), so the tests do not share a pre-auth budget.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from agentkey.core.errors import RATE_LIMITED, RATE_LIMITER_DOWN
from tests.notifications.processes import RedisServer, redis_server
from tests.resilience.support import Vending, provision
from tests.support.live import LiveStack, live_stack, second_server

pytestmark = [pytest.mark.live, pytest.mark.fault]

# Windows of a day: a fixed-window counter must not roll over in the middle of a test.
LIMITS = {
    "AGENTKEY_RATELIMIT_CREDENTIAL": "12/d",
    "AGENTKEY_RATELIMIT_READ": "12/d",
    "AGENTKEY_RATELIMIT_PREAUTH": "30/d",
    "TRUSTED_PROXY_COUNT": "1",
}


@dataclass
class Pair:
    a: LiveStack
    b: LiveStack
    redis: RedisServer
    vending: Vending


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("ratelimits")
    with (
        redis_server(tmp / "redis.log") as redis,
        live_stack(tmp, redis_url=redis.url, extra_env=LIMITS) as a,
        second_server(a, tmp / "serve-b.log", {"AGENTKEY_RATELIMIT_FAIL_OPEN_TIERS": "preauth,read"}) as b,
    ):
        assert a.process is not None
        assert b.process is not None
        assert a.process.pid != b.process.pid, "two separate web processes"
        yield Pair(a, b, redis, provision(a))


def call(stack: LiveStack, path: str, key: str, client_ip: str, spoofed: str = "") -> requests.Response:
    # The proxy appends the address it saw; anything before it is whatever the client sent.
    forwarded = f"{spoofed}, {client_ip}" if spoofed else client_ip
    return requests.get(
        stack.base_url + path,
        headers={"Authorization": f"Bearer {key}", "X-Forwarded-For": forwarded},
        timeout=15,
    )


def test_credential_fetches_spread_over_two_processes_exhaust_one_limit(pair):
    path = f"/api/tools/{pair.vending.tool_id}/credentials"
    responses = [call(s, path, pair.vending.key, "10.1.0.1") for s in [pair.a, pair.b] * 6]
    assert [r.status_code for r in responses] == [200] * 12
    assert [int(r.headers["X-RateLimit-Remaining"]) for r in responses] == list(range(11, -1, -1)), (
        "one counter, decremented by both processes in turn"
    )
    for stack in (pair.a, pair.b):
        refused = call(stack, path, pair.vending.key, "10.1.0.1")
        assert refused.status_code == 429
        assert refused.json()["error"] == RATE_LIMITED.error
        assert "credential" not in refused.json()
        assert refused.headers["X-RateLimit-Policy"] == "12;w=86400"
        assert int(refused.headers["Retry-After"]) >= 1


def test_reads_spread_over_two_processes_exhaust_one_limit(pair):
    statuses = [call(s, "/api/tools", pair.vending.key, "10.1.0.2").status_code for s in [pair.b, pair.a] * 7]
    assert statuses == [200] * 12 + [429, 429]


def test_pre_auth_tier_counts_the_proxied_client_not_a_spoofed_header(pair):
    guess = "sk_agent_" + "g" * 40
    statuses = [
        call(s, "/api/tools", guess, "10.1.0.3", spoofed=f"198.51.100.{i}").status_code
        for i, s in enumerate([pair.a, pair.b] * 16)
    ]
    assert statuses == [401] * 30 + [429, 429], "a fresh spoofed left-hand address buys no new budget"
    assert call(pair.a, "/api/tools", guess, "10.1.0.4").status_code == 401, (
        "another client behind the proxy has its own budget"
    )
    garbage = call(pair.b, "/api/tools", guess, "10.1.0.3", spoofed="not-an-ip, 1.1.1.1, ::1")
    assert garbage.status_code == 429


def test_redis_down_fails_closed_for_credentials_and_reads_follow_the_fail_open_setting(pair):
    tool_path = f"/api/tools/{pair.vending.tool_id}/credentials"
    pair.redis.stop()
    try:
        for stack in (pair.a, pair.b):
            refused = call(stack, tool_path, pair.vending.key, "10.1.0.5")
            assert refused.status_code == 503
            assert refused.json() == {"error": RATE_LIMITER_DOWN.error, "hint": RATE_LIMITER_DOWN.hint}
            assert refused.headers["Retry-After"] == "5"
        closed = call(pair.a, "/api/tools", pair.vending.key, "10.1.0.5")
        assert closed.status_code == 503, "server A lists no fail-open tier"
        assert closed.json()["error"] == RATE_LIMITER_DOWN.error
        opened = call(pair.b, "/api/tools", pair.vending.key, "10.1.0.5")
        assert opened.status_code == 200, "server B lets reads through uncounted (preauth,read)"
        assert "tools" in opened.json()
    finally:
        pair.redis.start()
    # Redis is back (empty: the counters went with it) and the same processes serve again.
    assert call(pair.a, tool_path, pair.vending.key, "10.1.0.6").status_code == 200
    assert call(pair.b, "/api/tools", pair.vending.key, "10.1.0.6").status_code == 200
