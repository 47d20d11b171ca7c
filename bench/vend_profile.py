"""Where the time of one credential vend goes (issue #7), in-process, production settings.

    .venv/bin/python bench/vend_profile.py                 # 2,000 timed vends + a cProfile pass
    .venv/bin/python bench/vend_profile.py --vends 5000 --top 30
    git worktree add /tmp/before <commit>       # a before/after on this machine, alternating:
    .venv/bin/python bench/vend_profile.py --code /tmp/before

Creates a private PostgreSQL database (``agentkey_bench_h5_profile``, dropped at the end),
migrates it, seeds one organization, agent and approved grant through the services, then
calls the WSGI application (the whole middleware stack, DRF, the view, rendering) with
``GET /api/tools/{id}/credentials`` and the agent's bearer key, as gunicorn would, in one
thread. Each phase is timed by wrapping the function that does it (the wrappers are the
benchmark's, never installed in the server):

- authentication: ``agent_authenticate`` (SHA-256 of the key, one indexed SELECT);
- rate limit: both ``ratelimit.hit`` calls (pre-auth tier per IP, credential tier per agent);
- grant lookup: ``_approved_grant`` (one SELECT of grant + tool + secret);
- decrypt: ``secret_reveal`` (AES-GCM under the master key);
- audit sign: ``sign_event``; audit insert + commit: ``_audit_committed`` less the signing
  (one INSERT in autocommit: the row is durable when it returns);
- serialization: DRF's ``JSONRenderer.render``;
- middleware, routing and DRF: the whole call less the phases above.

Also counts SQL statements and Redis commands per vend, times one ``SELECT 1`` and one Redis
``PING`` (the floor of any round trip), and prints the top functions of a cProfile pass.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import importlib
import io
import os
import pstats
import secrets
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PG_ADMIN_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres").rsplit("/", 1)[0]

#: Time spent in each phase during the current call, in seconds.
spent: dict[str, float] = defaultdict(float)
counts: dict[str, int] = defaultdict(int)


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - started

    return wrapper


def wrap(owner: object, attribute: str, label: str) -> None:
    setattr(owner, attribute, timed(label, getattr(owner, attribute)))


def counted(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        counts[name] += 1
        return fn(*args, **kwargs)

    return wrapper


def configure(db_name: str, redis_db: int) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "agentkey.settings.production",
            "SECRET_KEY": secrets.token_urlsafe(40),
            "ALLOWED_HOSTS": "127.0.0.1",
            "AGENTKEY_MASTER_KEYS": "prof1:" + base64.b64encode(os.urandom(32)).decode(),
            "AGENTKEY_AUDIT_KEY": "prof:" + base64.b64encode(os.urandom(32)).decode(),
            "DATABASE_URL": f"{PG_ADMIN_URL}/{db_name}",
            "REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
            "AGENTKEY_CACHE_PREFIX": f"prof-{secrets.token_hex(4)}",
            "AGENTKEY_SECURE_SSL_REDIRECT": "false",
            "AGENTKEY_RATELIMIT_PREAUTH": "1000000000/m",
            "AGENTKEY_RATELIMIT_CREDENTIAL": "1000000000/m",
            "AGENTKEY_VAR_DIR": str(ROOT / "var" / "bench-profile"),
        }
    )
    os.environ.pop("AGENTKEY_TEST_DB_NAME", None)


@contextmanager
def database(db_name: str) -> Iterator[None]:
    import psycopg

    with psycopg.connect(f"{PG_ADMIN_URL}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db_name}"')
    try:
        yield
    finally:
        from django.db import connections

        connections.close_all()
        for conn_wrapper in connections.all():
            pool = getattr(conn_wrapper, "pool", None)
            if pool is not None:
                pool.close()
        with psycopg.connect(f"{PG_ADMIN_URL}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def seed() -> tuple[str, str]:
    from accounts.models import User
    from accounts.permissions import Operator
    from accounts.services import agent_create, org_create
    from grants.services import grant_approve, grant_request, tool_add

    operator = Operator(label="bench")
    owner = User.objects.create_user("owner@profile.bench.example")
    org = org_create(name="Bench profile", owner=owner)
    issued = agent_create(org=org, name="profile-agent", actor=operator, owner=owner)
    tool = tool_add(org=org, actor=operator, name="Profiled tool", credential="bench-credential-profile").tool
    grant = grant_request(agent=issued.agent, tool=tool, reason="Profiling the vend.")
    grant_approve(grant=grant, reviewer=operator, expires_at=None)
    return issued.key.plaintext, str(tool.id)


def instrument() -> None:
    import redis
    from django.db import connection
    from rest_framework.renderers import JSONRenderer

    import accounts.api
    import audit.signing
    import grants.services.agents
    from agentkey.core import ratelimit
    from grants.api import CredentialApi

    # Wherever the view's authentication class finds ``agent_authenticate`` (it may be wrapped).
    for module in (accounts.api, importlib.import_module("accounts.authfailures")):
        if hasattr(module, "agent_authenticate"):
            wrap(module, "agent_authenticate", "authentication")
    wrap(ratelimit, "hit", "rate limit (2 tiers)")
    wrap(grants.services.agents, "_approved_grant", "grant lookup")
    wrap(grants.services.agents, "secret_reveal", "decrypt")
    wrap(grants.services.agents, "_audit_committed", "audit (sign + insert + commit)")
    wrap(audit.signing, "sign_event", "audit sign")
    wrap(JSONRenderer, "render", "serialization (JSON render)")
    wrap(CredentialApi, "dispatch", "view (DRF dispatch)")
    redis.Redis.execute_command = counted("redis commands", redis.Redis.execute_command)  # type: ignore[method-assign]
    redis.client.Pipeline.execute = counted("redis pipelines", redis.client.Pipeline.execute)  # type: ignore[method-assign]

    def count_sql(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        counts["sql statements"] += 1
        return execute(sql, params, many, context)

    connection.execute_wrappers.append(count_sql)


def environ(path: str, key: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_AUTHORIZATION": f"Bearer {key}",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def vend_once(app: Any, path: str, key: str) -> None:
    status: list[str] = []
    body = b"".join(app(environ(path, key), lambda s, h, *_: status.append(s)))
    if not status or not status[0].startswith("200") or b"bench-credential-profile" not in body:
        raise SystemExit(f"the vend failed: {status[:1]}")


def floors(n: int = 500) -> dict[str, float]:
    from django.core.cache import cache
    from django.db import connection

    pg, rd = [], []
    with connection.cursor() as cursor:
        for _ in range(n):
            started = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            pg.append(time.perf_counter() - started)
    client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    for _ in range(n):
        started = time.perf_counter()
        client.ping()
        rd.append(time.perf_counter() - started)
    connection.close()
    return {"PostgreSQL SELECT 1": statistics.median(pg), "Redis PING": statistics.median(rd)}


def report(totals: list[float], per_phase: dict[str, list[float]]) -> None:
    """The phase table: medians in µs and their share of the median vend."""
    total = statistics.median(totals)
    print("| phase | median µs | share of the median vend |")
    print("|---|---:|---:|")
    phases = {name: statistics.median(values) for name, values in per_phase.items()}
    phases["audit insert + commit"] = statistics.median(
        a - s
        for a, s in zip(per_phase["audit (sign + insert + commit)"], per_phase["audit sign"], strict=True)
    )
    inside = sum(
        phases[n]
        for n in (
            "authentication",
            "rate limit (2 tiers)",
            "grant lookup",
            "decrypt",
            "audit (sign + insert + commit)",
        )
    )
    phases["rest of the view (DRF, permissions, body)"] = phases["view (DRF dispatch)"] - inside
    phases["middleware, routing, WSGI"] = (
        total - phases["view (DRF dispatch)"] - phases["serialization (JSON render)"]
    )
    order = [
        "middleware, routing, WSGI",
        "rate limit (2 tiers)",
        "authentication",
        "grant lookup",
        "decrypt",
        "audit sign",
        "audit insert + commit",
        "serialization (JSON render)",
        "rest of the view (DRF, permissions, body)",
    ]
    for name in order:
        print(f"| {name} | {phases[name] * 1e6:.0f} | {phases[name] / total * 100:.0f} % |")
    print(
        f"| **whole vend** (min / median / p90 / max) | {min(totals) * 1e6:.0f} / **{total * 1e6:.0f}** / "
        f"{sorted(totals)[int(len(totals) * 0.9)] * 1e6:.0f} / {max(totals) * 1e6:.0f} | 100 % |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--vends", type=int, default=2000, help="timed vends (default 2000)")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--top", type=int, default=25, help="cProfile rows to print")
    parser.add_argument("--db", default="agentkey_bench_h5_profile")
    parser.add_argument("--redis-db", type=int, default=15)
    parser.add_argument("--sort", default="tottime", help="cProfile order: tottime or cumulative")
    parser.add_argument(
        "--code",
        type=Path,
        help="profile the project in this directory instead (a git worktree of an earlier commit, "
        "say), for a before/after on the same machine with the same packages",
    )
    args = parser.parse_args(argv)
    if args.code is not None:
        sys.path.insert(0, str(args.code.resolve()))
    configure(args.db, args.redis_db)
    import django

    django.setup()
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application

    with database(args.db):
        call_command("migrate", "--noinput", verbosity=0)
        key, tool_id = seed()
        app = get_wsgi_application()
        path = f"/api/tools/{tool_id}/credentials"
        instrument()
        for _ in range(args.warmup):
            vend_once(app, path, key)
        totals: list[float] = []
        per_phase: dict[str, list[float]] = defaultdict(list)
        counts.clear()
        for _ in range(args.vends):
            spent.clear()
            started = time.perf_counter()
            vend_once(app, path, key)
            totals.append(time.perf_counter() - started)
            for name, value in spent.items():
                per_phase[name].append(value)
        print(f"code: {args.code or ROOT}; load average {os.getloadavg()}")
        print(f"{args.vends} vends in one thread, production settings, PostgreSQL + Redis on 127.0.0.1\n")
        report(totals, per_phase)
        print()
        for name, value in sorted(counts.items()):
            print(f"{name} per vend: {value / args.vends:.2f}")
        for name, value in floors().items():
            print(f"round-trip floor, {name}: {value * 1e6:.0f} µs")
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(min(args.vends, 1000)):
            vend_once(app, path, key)
        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(args.sort).print_stats(args.top)
        print(f"\ncProfile, sorted by {args.sort}:")
        print("\n".join(out.getvalue().splitlines()[: args.top + 12]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
