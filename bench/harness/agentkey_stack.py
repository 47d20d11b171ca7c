"""AgentKey's production web stack (``make serve``) on a private database, seeded for the benchmark."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.support.live import PG_ADMIN_URL, LiveStack, descendants, free_port, serve

#: Limits raised through the environment: the limiter still runs (two Redis counters per
#: request), it just never refuses during a run.
RAISED_LIMITS = {
    "AGENTKEY_RATELIMIT_PREAUTH": "1000000000/m",
    "AGENTKEY_RATELIMIT_READ": "1000000000/m",
    "AGENTKEY_RATELIMIT_CREDENTIAL": "1000000000/m",
    "AGENTKEY_RATELIMIT_REQUEST": "1000000000/m",
}

SEED = """
import json
from accounts.models import User
from accounts.permissions import Operator
from accounts.services import agent_create, org_create
from grants.services import grant_approve, grant_request, tool_add
from notifications.models import EmailSettings

operator = Operator(label="bench")
out = {}
for label, count in SIZES:
    owner = User.objects.create_user(f"owner@{label}.bench.example")
    org = org_create(name=f"Bench {label}", owner=owner)
    EmailSettings.objects.create(org=org, enabled=False, events=[])
    issued = agent_create(org=org, name=f"{label}-agent", actor=operator, owner=owner)
    agent = issued.agent
    tools = [
        tool_add(
            org=org, actor=operator, name=f"{label} tool {n:04d}",
            description=f"Benchmark tool number {n} of the {label} catalog.",
            credential=f"bench-credential-{label}-{n:04d}",
        ).tool
        for n in range(count)
    ]
    approved = grant_request(agent=agent, tool=tools[0], reason="Benchmarking the vend.")
    grant_approve(grant=approved, reviewer=operator, expires_at=None)
    grant_request(agent=agent, tool=tools[1], reason="Benchmarking the request path.")
    out[label] = {"key": issued.key.plaintext, "vend_tool": str(tools[0].id), "pending_tool": str(tools[1].id)}
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Seeded:
    """One organization: its agent's key, a tool it may fetch, a tool it already asked for."""

    key: str
    vend_tool: str
    pending_tool: str


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(f"{PG_ADMIN_URL}/postgres", autocommit=True)


@contextlib.contextmanager
def agentkey_stack(
    tmp: Path, *, db_name: str, redis_db: int, workers: int, threads: int, keep: bool = False
) -> Iterator[LiveStack]:
    """Migrate ``db_name`` afresh and run ``make serve`` on it (gunicorn, production settings)."""
    if not db_name.startswith("agentkey_bench"):
        raise ValueError("the benchmark database name must start with agentkey_bench (it is dropped)")
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db_name}"')
    port = free_port()
    master = "bench1:" + base64.b64encode(os.urandom(32)).decode()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "agentkey.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "AGENTKEY_MASTER_KEYS": master,
        "AGENTKEY_AUDIT_KEY": "bench:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "DATABASE_URL": f"{PG_ADMIN_URL}/{db_name}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "AGENTKEY_CACHE_PREFIX": f"bench-{secrets.token_hex(4)}",
        "AGENTKEY_SECURE_SSL_REDIRECT": "false",
        "AGENTKEY_SECURE_COOKIES": "false",
        "AGENTKEY_VAR_DIR": str(tmp / "var"),
        "AGENTKEY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": str(workers),
        "THREADS": str(threads),
        "PYTHONUNBUFFERED": "1",
        **RAISED_LIMITS,
    }
    env.pop("AGENTKEY_TEST_DB_NAME", None)
    stack = LiveStack(
        base_url=f"http://127.0.0.1:{port}",
        env=env,
        log_path=tmp / "serve.log",
        secrets=[master.split(":")[1]],
    )
    try:
        stack._run("migrate", "--noinput", "-v", "0")
        with serve(env, stack.log_path, stack.base_url) as process:
            stack.process = process
            yield stack
    finally:
        if not keep:
            with _admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def seed(stack: LiveStack, sizes: dict[str, int]) -> dict[str, Seeded]:
    """One organization per entry of ``sizes`` (label -> number of tools), made through the services."""
    pairs = repr(list(sizes.items()))
    out = json.loads(stack.shell(SEED.replace("SIZES", pairs)).strip().splitlines()[-1])
    return {label: Seeded(**values) for label, values in out.items()}


def web_workers(stack: LiveStack) -> list[int]:
    """The gunicorn worker processes (children of the gunicorn master) of ``stack``."""
    assert stack.process is not None  # noqa: S101
    below = descendants(stack.process.pid)
    gunicorn = {pid for pid in below if b"gunicorn" in _cmdline(pid)}
    parents = {_parent(pid) for pid in gunicorn}
    # make's `sh -c` line mentions gunicorn too: the workers are the leaves (no gunicorn child).
    return sorted(pid for pid in gunicorn if pid not in parents and _parent(pid) in gunicorn)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0
