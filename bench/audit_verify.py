"""Write a signed audit log of N events with concurrent writers while the seal job runs, then time audit_verify.

    .venv/bin/python bench/audit_verify.py                    # 1,000,000 events, 4 writers, then drop the database
    .venv/bin/python bench/audit_verify.py --events 200000 --writers 2
    .venv/bin/python bench/audit_verify.py --keep             # keep the database ...
    .venv/bin/python bench/audit_verify.py --reuse --keep     # ... and time it again without writing
    .venv/bin/python bench/audit_verify.py --writers 0        # one sequential loader, sealed afterwards

PostgreSQL is found as for the test suite (DATABASE_URL's server). The script creates its own
database (``--db``, default ``agentkey_bench_verify``; the name must start with
``agentkey_bench``) and migrates it. ``--writers`` processes then write the events at the same
time, each in transactions of ``--batch`` events that stay open a random 0-20 ms (so ids commit
out of order) and of which 5 % roll back (leaving holes); the rows are built and signed exactly
as audit.services.audit_record builds them (audit.signing) and loaded with COPY, and one
transaction in 50 is a real audit_record() call. Meanwhile a sealer process runs the beat job's
service (audit.sealing.seal_checkpoints) in a loop. Then the verification runs ``--repeat``
times; the script reports the median rate and exits 1 if any run finds a problem.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

DEFAULT_DB = "agentkey_bench_verify"
SERVER_URL = "postgres://postgres@127.0.0.1:5432/postgres"
BENCH_KEY = "bench:" + "QmVuY2hCZW5jaEJlbmNoQmVuY2hCZW5jaEJlbmNoQmU="
BATCH = 50_000
ACTIONS = ["credential.vended"] * 8 + ["grant.requested", "grant.approved"]
_IDS = random.Random(6)
ORGS = [uuid.UUID(int=_IDS.getrandbits(128), version=4) for _ in range(3)]
AGENTS = [uuid.UUID(int=_IDS.getrandbits(128), version=4) for _ in range(50)]
TOOLS = [uuid.UUID(int=_IDS.getrandbits(128), version=4) for _ in range(20)]


def _server_url() -> str:
    url = os.environ.get("DATABASE_URL", SERVER_URL)
    return url.rsplit("/", 1)[0] + "/postgres"


def _setup_django(db: str) -> None:
    os.environ["DATABASE_URL"] = _server_url().rsplit("/", 1)[0] + "/" + db
    os.environ["AGENTKEY_AUDIT_KEY"] = BENCH_KEY
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentkey.settings.base")
    import django

    django.setup()


def _columns() -> tuple[str, ...]:
    from audit.verifier import EVENT_FIELDS

    return ("created_at", *[f for f in EVENT_FIELDS if f != "created_at"], "signature")


def _copy_statement() -> sql.Composed:
    return sql.SQL("COPY audit_auditevent ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, _columns()))
    )


def _row(rng: random.Random, n: int, created: datetime) -> list[Any]:
    """One event as audit_record would write it: canonical values, signed the same way."""
    from audit import signing

    agent, tool, org = rng.choice(AGENTS), rng.choice(TOOLS), ORGS[n % 3]
    columns = _columns()
    row: dict[str, Any] = {
        "action": ACTIONS[n % len(ACTIONS)],
        "actor_id": str(agent),
        "actor_label": f"Agent {agent.hex[:6]}",
        "actor_type": "agent",
        "agent_id": str(agent),
        "created_at": signing.canonical_time(created),
        "ip": signing.canonical_ip(
            "2001:db8::" + format(n % 65535, "x") if n % 5 == 0 else f"203.0.113.{n % 250}"
        ),
        "metadata": signing.canonical_metadata({"tool": f"tool-{tool.hex[:4]}", "n": n, "ratio": n / 7}),
        "org_id": str(org),
        "request_id": f"{n:016x}",
        "target_id": str(tool),
        "target_label": f"Tool {tool.hex[:6]}",
        "target_type": "tool",
        "tool_id": str(tool),
    }
    values = [created, *[row[f] for f in columns[1:-1]], signing.sign_event(row)]
    values[columns.index("metadata")] = json.dumps(row["metadata"])
    return values


def _seed(events: int) -> None:
    """One loader, ids in commit order (--writers 0)."""
    from django.db import connection

    rng = random.Random(6)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    copy = _copy_statement()
    raw = connection.connection
    written = 0
    while written < events:
        batch = min(BATCH, events - written)
        with raw.cursor() as cursor, cursor.copy(copy) as out:
            for n in range(written, written + batch):
                out.write_row(_row(rng, n, start + timedelta(milliseconds=n * 30)))
        if not raw.autocommit:
            raw.commit()
        written += batch
        print(f"  seeded {written:,} events", flush=True)


def _writer(seed: int, events: int, batch: int, done: Any) -> None:
    """A writer process: transactions of ``batch`` events, held open 0-20 ms, 5 % rolled back."""
    from django.db import connection, transaction
    from django.utils import timezone

    from audit.models import Action
    from audit.services import SystemActor, audit_record

    rng = random.Random(seed)
    copy = _copy_statement()
    written = n = 0
    while written < events:
        size = min(batch, events - written)
        rollback = rng.random() < 0.05
        try:
            with transaction.atomic():
                if n % 50 == 0:
                    audit_record(
                        action=Action.GRANT_APPROVED,
                        actor=SystemActor(label=f"bench writer {seed}"),
                        org_id=ORGS[seed % 3],
                        metadata={"writer": seed, "transaction": n, "note": "écrit par le banc ✓"},
                    )
                    size = 1
                else:
                    with connection.connection.cursor() as cursor, cursor.copy(copy) as out:
                        for i in range(size):
                            out.write_row(_row(rng, seed * 10_000_000 + written + i, timezone.now()))
                time.sleep(rng.uniform(0, 0.02))
                if rollback:
                    raise _Rollback
            written += size
        except _Rollback:
            pass
        n += 1
    done.put(written)


class _Rollback(Exception):
    pass


def _sealer(stop: Any, sealed: Any) -> None:
    from audit.sealing import seal_checkpoints

    count = 0
    while not stop.is_set():
        count += len(seal_checkpoints())
        time.sleep(0.2)
    sealed.put(count)


def _write_concurrently(events: int, writers: int, batch: int) -> None:
    import multiprocessing

    from django.db import connections

    from audit.sealing import seal_checkpoints

    connections.close_all()  # each process opens its own connection
    context = multiprocessing.get_context("fork")
    done, sealed, stop = context.Queue(), context.Queue(), context.Event()
    share = [events // writers + (1 if i < events % writers else 0) for i in range(writers)]
    procs = [context.Process(target=_writer, args=(i + 1, share[i], batch, done)) for i in range(writers)]
    sealer = context.Process(target=_sealer, args=(stop, sealed))
    sealer.start()
    for proc in procs:
        proc.start()
    written = [done.get() for _ in procs]
    for proc in procs:
        proc.join()
    stop.set()
    during = sealed.get()
    sealer.join()
    after = len(seal_checkpoints())
    print(
        f"  {sum(written):,} events by {writers} writers; {during} checkpoints sealed while writing, {after} after"
    )


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a local process (the verifier's PostgreSQL backend)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _time_verify(workers: int | None) -> tuple[int, float, float]:
    """Events, wall seconds and CPU seconds (this process, its workers, its own backend)."""
    from django.db import connection

    from audit.verify import audit_verify

    connection.ensure_connection()
    backend = connection.connection.info.backend_pid
    cpu_before = _cpu_seconds(backend)
    times_before = os.times()
    started = time.perf_counter()
    report = audit_verify(workers=workers)
    seconds = time.perf_counter() - started
    times_after = os.times()
    if not report.ok:
        raise SystemExit(f"verification found problems: {dict(report.counts)} {report.problems[:5]}")
    cpu = sum(
        getattr(times_after, name) - getattr(times_before, name)
        for name in ("user", "system", "children_user", "children_system")
    ) + (_cpu_seconds(backend) - cpu_before)
    return report.events, seconds, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--writers", type=int, default=4, help="concurrent writer processes (0: one loader)")
    parser.add_argument("--batch", type=int, default=200, help="events per writer transaction")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="verifier processes (default: automatic)")
    parser.add_argument("--db", default=DEFAULT_DB)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()
    if not args.db.startswith("agentkey_bench"):
        parser.error("--db must start with agentkey_bench (it is dropped afterwards)")

    admin = psycopg.connect(_server_url(), autocommit=True)
    if not args.reuse:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(args.db)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(args.db)))
    _setup_django(args.db)
    from django.conf import settings
    from django.core.management import call_command

    from audit.sealing import seal_checkpoints

    settings.AGENTKEY_AUDIT_SEAL_GRACE = 0.05
    settings.AGENTKEY_AUDIT_ANCHOR_FILE = ""
    try:
        if not args.reuse:
            call_command("migrate", verbosity=0)
            started = time.monotonic()
            if args.writers > 0:
                _write_concurrently(args.events, args.writers, args.batch)
            else:
                _seed(args.events)
                seal_checkpoints()
            print(f"wrote and sealed {args.events:,} signed events in {time.monotonic() - started:.1f} s")
        rates, cpu_rates = [], []
        for attempt in range(1, args.repeat + 1):
            events, seconds, cpu = _time_verify(args.workers)
            rates.append(events / seconds)
            cpu_rates.append(events / cpu if cpu else 0.0)
            print(
                f"run {attempt}: {events:,} events in {seconds:.2f} s = {events / seconds:,.0f} events/s "
                f"({events / cpu if cpu else 0:,.0f} events per CPU-second; load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
        print(
            f"median: {statistics.median(rates):,.0f} events/s over {args.repeat} runs "
            f"(min {min(rates):,.0f}, max {max(rates):,.0f}); "
            f"{statistics.median(cpu_rates):,.0f} events per CPU-second"
        )
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(args.db)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
