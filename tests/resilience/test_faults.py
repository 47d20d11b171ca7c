"""Faults under load against the production stack (issue 8, item 5).

Each test owns what it breaks: a private PostgreSQL cluster, a private
redis-server, the gunicorn workers of its own `make serve`. The figures each
run measures are printed (``-s`` or the captured output of a failure) and
recorded in docs/security.md.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from agentkey.core.errors import RATE_LIMITER_DOWN, UNAVAILABLE
from tests.notifications.processes import RedisServer, redis_server
from tests.resilience.support import VendLoad, postgres_cluster, provision, vended_request_ids
from tests.support.live import LiveStack, descendants, live_stack

pytestmark = [pytest.mark.live, pytest.mark.fault]

# The load must measure faults, not the limiter.
NO_LIMITS = {
    "AGENTKEY_RATELIMIT_CREDENTIAL": "1000000/m",
    "AGENTKEY_RATELIMIT_PREAUTH": "1000000/m",
    "AGENTKEY_RATELIMIT_READ": "1000000/m",
}
REFUSALS = ({"error": UNAVAILABLE.error, "hint": UNAVAILABLE.hint},)


def test_postgres_stopped_mid_load_then_back_without_restarting_the_web_process(
    tmp_path: Path, figures: Callable[[str], None]
):
    with (
        postgres_cluster() as pg,
        redis_server(tmp_path / "redis.log") as redis,
        live_stack(
            tmp_path,
            pg_admin_url=pg.admin_url,
            redis_url=redis.url,
            # A short pool timeout: while the database is away a vend waits at most this long.
            extra_env={**NO_LIMITS, "AGENTKEY_DB_POOL_TIMEOUT": "3"},
        ) as stack,
    ):
        vending = provision(stack)
        assert stack.process is not None
        web_processes = set(descendants(stack.process.pid))
        load = VendLoad([stack.base_url], vending, threads=4, timeout=20)
        load.start()
        try:
            load.wait_for(200, 40)
            pg.stop("immediate")
            down_at = time.monotonic()
            load.wait_for(503, 4, deadline=60)
            health = requests.get(f"{stack.base_url}/healthz", timeout=15)
            assert health.status_code == 503
            pg.start()
            up_at = time.monotonic()
            served_before = load.count(200)
            load.wait_for(200, served_before + 40, deadline=60)
        finally:
            load.stop()
        assert stack.process.poll() is None, "the same make serve process served throughout"
        assert set(descendants(stack.process.pid)) == web_processes, "no worker was restarted"
        outcomes = list(load.outcomes)
        audited = set(vended_request_ids(stack, vending.agent_id))

    ok = [o for o in outcomes if o.status == 200]
    refused = [o for o in outcomes if o.status == 503]
    other = [o for o in outcomes if o.status not in (200, 503)]
    assert not other, f"only credentials or 503s: {[(o.status, o.body) for o in other][:5]}"
    assert all(o.body is not None and o.body["credential"] == vending.credential for o in ok)
    assert all(o.body in REFUSALS for o in refused), {str(o.body) for o in refused}
    missing = [o.request_id for o in ok if o.request_id not in audited]
    assert not missing, f"credentials returned without their credential.vended row: {missing}"
    unanswered = audited - {o.request_id for o in ok}
    # Every client here waited for its answer, and nothing after the commit touches
    # the database, so no row can lack its delivered response.
    assert not unanswered, unanswered
    recovered = min(o.ended for o in ok if o.started > up_at) - up_at
    figures(
        f"PG outage: {len(outcomes)} vends, {len(ok)} credentials, {len(audited)} audit rows, "
        f"{len(refused)} x 503, outage {up_at - down_at:.1f}s, first credential {recovered:.1f}s after restart"
    )


THREADS_PER_WORKER = 2


@dataclass
class Served:
    stack: LiveStack
    redis: RedisServer


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One `make serve` (2 gthread workers) on the shared PostgreSQL and a private redis-server."""
    tmp = tmp_path_factory.mktemp("faults")
    with (
        redis_server(tmp / "redis.log") as redis,
        live_stack(
            tmp,
            redis_url=redis.url,
            extra_env={**NO_LIMITS, "WORKERS": "2", "THREADS": str(THREADS_PER_WORKER)},
        ) as stack,
    ):
        yield Served(stack, redis)


def test_a_worker_killed_mid_load_leaves_no_credential_without_its_audit_row(
    served: Served, figures: Callable[[str], None]
):
    threads_per_worker = THREADS_PER_WORKER
    stack = served.stack
    vending = provision(stack, "Kill-Agent")
    assert stack.process is not None
    load = VendLoad([stack.base_url], vending, threads=6, timeout=20)
    kills = 0
    load.start()
    try:
        for _round in range(2):
            load.wait_for(200, load.count(200) + 30)
            # gunicorn workers are the gunicorn processes whose parent is the gunicorn master.
            tree = descendants(stack.process.pid)
            workers = [pid for pid in tree if descendants(pid) == [] and _is_worker(pid)]
            assert len(workers) == 2, workers
            os.kill(workers[0], signal.SIGKILL)
            kills += 1
        load.wait_for(200, load.count(200) + 40, deadline=60)
    finally:
        load.stop()
    outcomes = list(load.outcomes)
    audited = set(vended_request_ids(stack, vending.agent_id))

    ok = {o.request_id for o in outcomes if o.status == 200}
    lost = [o for o in outcomes if o.status is None]
    other = [o for o in outcomes if o.status not in (200, None)]
    assert not other, [(o.status, o.body) for o in other][:5]
    assert ok <= audited, f"credentials returned without their audit row: {sorted(ok - audited)}"
    rows_without_response = audited - ok
    assert rows_without_response <= {o.request_id for o in lost}, "a row for a call that was not lost"
    # At most `threads` calls are being handled by a gthread worker at the instant it dies.
    assert len(rows_without_response) <= kills * threads_per_worker
    assert len(lost) <= kills * load.threads, "only calls in flight when a worker died are lost"
    figures(
        f"SIGKILL: {kills} workers killed, {len(outcomes)} vends, {len(ok)} credentials returned, "
        f"{len(audited)} audit rows, {len(lost)} calls lost in flight, "
        f"{len(rows_without_response)} rows without a delivered response (bound {kills * threads_per_worker})"
    )


def _is_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"gunicorn" in cmdline


def test_redis_down_mid_load_refuses_vends_and_they_resume_when_it_returns(
    served: Served, figures: Callable[[str], None]
):
    stack, redis = served.stack, served.redis
    vending = provision(stack, "Redis-Agent")
    load = VendLoad([stack.base_url], vending, threads=3, timeout=20)
    load.start()
    try:
        load.wait_for(200, 20)
        redis.stop()
        load.wait_for(503, 10)
        redis.start()
        load.wait_for(200, load.count(200) + 20)
    finally:
        load.stop()
    outcomes = list(load.outcomes)
    audited = set(vended_request_ids(stack, vending.agent_id))
    refused = [o for o in outcomes if o.status == 503]
    assert all(o.body == {"error": RATE_LIMITER_DOWN.error, "hint": RATE_LIMITER_DOWN.hint} for o in refused)
    assert {o.status for o in outcomes} == {200, 503}
    assert audited == {o.request_id for o in outcomes if o.status == 200}, "a refused fetch writes no row"
    figures(
        f"Redis outage: {len(outcomes)} vends, {len(outcomes) - len(refused)} credentials, "
        f"{len(audited)} audit rows, {len(refused)} x 503 (limiter down)"
    )
