"""Real Redis brokers and Celery workers for the notification tests, run as subprocesses."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import redis
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(process: subprocess.Popen[Any], *, grace: float = 10.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace)


class RedisServer:
    """A throwaway redis-server (no persistence) that can be stopped and started on the same port."""

    def __init__(self, port: int, log: IO[str]) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._log = log
        self._process: subprocess.Popen[Any] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise AssertionError("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None:
            _stop(self._process)
            self._process = None


@contextlib.contextmanager
def redis_server(log_path: Path) -> Iterator[RedisServer]:
    with log_path.open("w") as log:
        server = RedisServer(free_port(), log)
        server.start()
        try:
            yield server
        finally:
            server.stop()


def test_database_url() -> str:
    """The database this (transactional) test runs on, for a subprocess to share."""
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def celery_env(broker_url: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "agentkey.settings.test",
        "DATABASE_URL": test_database_url(),
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "CELERY_BROKER_URL": broker_url,
        "AGENTKEY_NOTIFICATIONS_DISPATCH": "background",
        "AGENTKEY_ALLOW_LOOPBACK_URLS": "true",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PYTEST_XDIST_WORKER", None)
    env.update(extra)
    return env


@contextlib.contextmanager
def celery(command: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[Any]]:
    """``celery -A agentkey <command>`` as a subprocess; stopped (its whole group) on exit."""
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "agentkey", *command],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            _stop(process)


@contextlib.contextmanager
def this_process_publishes_to(broker_url: str) -> Iterator[None]:
    """Point this process's Celery app at a real broker (the tests run it eager and brokerless)."""
    from agentkey.celery import app

    def drop_connections() -> None:
        if app._pool is not None:
            app._pool.force_close_all()
        app._pool = None
        app.amqp._producer_pool = None

    saved = (app.conf.broker_url, app.conf.task_always_eager)
    drop_connections()
    app.conf.broker_url, app.conf.task_always_eager = broker_url, False
    try:
        yield
    finally:
        drop_connections()
        app.conf.broker_url, app.conf.task_always_eager = saved
