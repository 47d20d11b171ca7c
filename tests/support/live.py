"""Start the production web stack (`make serve`) on a fresh PostgreSQL database."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres").rsplit("/", 1)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveStack:
    base_url: str
    env: dict[str, str]
    log_path: Path
    secrets: list[str] = field(default_factory=list)
    process: subprocess.Popen[Any] | None = None  # the `make serve` process group leader

    def _run(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"manage.py {args[0]} failed: {result.stderr[-2000:]}")
        return result.stdout

    def manage(self, *args: str, stdin: str | None = None) -> dict[str, Any]:
        """Run an operator command against the live database; return its --json output."""
        return dict(json.loads(self._run(*args, "--json", stdin=stdin).strip().splitlines()[-1]))

    def shell(self, code: str) -> str:
        return self._run("shell", "-c", code)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (make -> sh -> gunicorn master -> workers), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process exited while we looked
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@contextlib.contextmanager
def serve(env: dict[str, str], log_path: Path, base_url: str) -> Iterator[subprocess.Popen[Any]]:
    """`make serve` with ``env``; yields once /healthz answers, stops the whole group on exit."""
    venv = str(Path(sys.executable).parent.parent)
    with log_path.open("w") as log:
        server = subprocess.Popen(
            ["make", "-s", "serve", f"VENV={venv}"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or too busy to answer in time
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"make serve did not come up:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=20)


@contextlib.contextmanager
def second_server(
    stack: LiveStack, log_path: Path, extra_env: dict[str, str] | None = None
) -> Iterator[LiveStack]:
    """Another `make serve` process on the same database, Redis and keys: a second web host."""
    port = free_port()
    env = {**stack.env, "PORT": str(port), **(extra_env or {})}
    other = LiveStack(base_url=f"http://127.0.0.1:{port}", env=env, log_path=log_path, secrets=stack.secrets)
    with serve(env, log_path, other.base_url) as process:
        other.process = process
        yield other


@contextlib.contextmanager
def live_stack(
    tmp_path: Path,
    redis_db: int = 9,
    extra_env: dict[str, str] | None = None,
    *,
    pg_admin_url: str = PG_ADMIN_URL,
    redis_url: str | None = None,
) -> Iterator[LiveStack]:
    """The production stack on a fresh database of the server at ``pg_admin_url``."""
    name = f"agentkey_live_{secrets.token_hex(4)}"
    with psycopg.connect(f"{pg_admin_url}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    port = free_port()
    master = "live1:" + base64.b64encode(os.urandom(32)).decode()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "agentkey.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "AGENTKEY_MASTER_KEYS": master,
        "AGENTKEY_AUDIT_KEY": "live:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "DATABASE_URL": f"{pg_admin_url}/{name}",
        "REDIS_URL": redis_url or f"redis://127.0.0.1:6379/{redis_db}",
        "AGENTKEY_SECURE_SSL_REDIRECT": "false",
        "AGENTKEY_SECURE_COOKIES": "false",
        "AGENTKEY_VAR_DIR": str(tmp_path / "var"),
        "AGENTKEY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": "2",
        "THREADS": "2",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    env.pop("AGENTKEY_TEST_DB_NAME", None)
    log_path = tmp_path / "serve.log"
    stack = LiveStack(
        base_url=f"http://127.0.0.1:{port}", env=env, log_path=log_path, secrets=[master.split(":")[1]]
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
    )
    try:
        with serve(env, log_path, stack.base_url) as process:
            stack.process = process
            yield stack
    finally:
        with psycopg.connect(f"{pg_admin_url}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
