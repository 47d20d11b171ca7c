"""Private infrastructure and a vend load generator for the fault tests.

Everything here is started by the test that uses it (its own PostgreSQL
cluster, its own redis-server), so stopping it mid-run disturbs nobody else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests

from tests.support.live import LiveStack, free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PostgresCluster:
    """A throwaway PostgreSQL cluster (initdb in a temp dir) that can be stopped and started.

    initdb refuses to run as root, so under root the cluster belongs to the
    ``postgres`` OS user and every pg_ctl call runs as that user.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="agentkey-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.admin_url = f"postgres://postgres@127.0.0.1:{self.port}"
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, user="postgres", group="postgres")
            self._as_postgres = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [*self._as_postgres, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise AssertionError(f"{args[0]} failed: {result.stdout[-1500:]} {result.stderr[-1500:]}")

    def init(self) -> None:
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8")

    def start(self) -> None:
        # fsync off: this cluster holds nothing worth keeping; an immediate stop is
        # a crash of the server process, not of the machine, so committed data survives.
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"
        )

    def stop(self, mode: str = "immediate") -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def remove(self) -> None:
        if self.running():
            with contextlib.suppress(AssertionError):
                self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@dataclass(frozen=True)
class Vending:
    """An agent with an approved grant on a tool, made through the operator CLI."""

    agent_id: str
    key: str
    tool_id: str
    credential: str


def provision(stack: LiveStack, name: str = "Load-Agent") -> Vending:
    org = stack.manage("createorg", f"Resilience {uuid.uuid4().hex[:6]}")
    agent = stack.manage("createagent", "--org", org["slug"], "--name", name)
    credential = "res_cred_" + uuid.uuid4().hex
    tool = stack.manage("createtool", "--org", org["slug"], "--name", "Linear", stdin=credential)
    stack.manage("assign", "--agent", agent["agent_id"], "--tool", tool["tool_id"])
    stack.secrets += [agent["api_key"], credential]
    return Vending(agent["agent_id"], agent["api_key"], tool["tool_id"], credential)


@dataclass
class Outcome:
    request_id: str
    status: int | None  # None: no response reached the client (connection reset, timeout)
    body: dict[str, Any] | None
    started: float
    ended: float


@dataclass
class VendLoad:
    """Client threads fetching one credential as fast as they can, each call with its own X-Request-ID."""

    base_urls: list[str]
    vending: Vending
    threads: int = 4
    timeout: float = 20.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _one(self, base_url: str) -> Outcome:
        request_id = "res-" + uuid.uuid4().hex
        started = time.monotonic()
        try:
            response = requests.get(
                f"{base_url}/api/tools/{self.vending.tool_id}/credentials",
                headers={
                    "Authorization": f"Bearer {self.vending.key}",
                    "X-Request-ID": request_id,
                    # A fresh connection per call, so calls spread over the workers
                    # and a killed worker takes only its own calls with it.
                    "Connection": "close",
                },
                timeout=self.timeout,
            )
        except requests.RequestException:
            return Outcome(request_id, None, None, started, time.monotonic())
        try:
            body = response.json()
        except ValueError:
            body = {"unparsed": response.text[:200]}
        if response.headers.get("X-Request-ID") != request_id:
            body = {"wrong_request_id": response.headers.get("X-Request-ID"), **body}
        return Outcome(request_id, response.status_code, body, started, time.monotonic())

    def _loop(self, index: int) -> None:
        n = index
        while not self._stop.is_set():
            try:
                outcome = self._one(self.base_urls[n % len(self.base_urls)])
            except Exception as exc:  # noqa: BLE001  (kept, reported by the test)
                outcome = Outcome("error", -1, {"exception": repr(exc)}, time.monotonic(), time.monotonic())
            n += 1
            with self._lock:
                self.outcomes.append(outcome)

    def start(self) -> None:
        self._workers = [
            threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(self.threads)
        ]
        for worker in self._workers:
            worker.start()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=self.timeout + 10)

    def count(self, status: int | None) -> int:
        with self._lock:
            return sum(1 for o in self.outcomes if o.status == status)

    def wait_for(self, status: int | None, n: int, deadline: float = 60.0) -> None:
        end = time.monotonic() + deadline
        while self.count(status) < n:
            if time.monotonic() > end or not any(w.is_alive() for w in self._workers):
                raise AssertionError(f"waited {deadline}s for {n} x {status}: {self.summary()}")
            time.sleep(0.05)

    def summary(self) -> dict[str, int]:
        with self._lock:
            tally: dict[str, int] = {}
            for o in self.outcomes:
                tally[str(o.status)] = tally.get(str(o.status), 0) + 1
            return tally


def vended_request_ids(stack: LiveStack, agent_id: str) -> list[str]:
    """The request ids of every credential.vended audit row of ``agent_id`` (read straight from SQL)."""
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT request_id FROM audit_auditevent WHERE action = 'credential.vended' AND actor_id = %s",
            (agent_id,),
        ).fetchall()
    return [str(r[0]) for r in rows]
