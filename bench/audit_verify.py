"""Seed a signed, sealed audit log of N events into a throwaway database and time audit_verify.

    .venv/bin/python bench/audit_verify.py                    # 1,000,000 events, then drop the database
    .venv/bin/python bench/audit_verify.py --events 200000
    .venv/bin/python bench/audit_verify.py --keep             # keep the database ...
    .venv/bin/python bench/audit_verify.py --reuse --keep     # ... and time it again without seeding

PostgreSQL is found as for the test suite (DATABASE_URL's server). The script creates its own
database (``--db``, default ``agentkey_bench_verify``; the name must start with
``agentkey_bench``), migrates it, signs the events in Python exactly as audit_record does
(audit.signing) and loads them with COPY in batches, seals them into checkpoints with the beat
job's service, then runs the verification ``--repeat`` times and reports the median rate.
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


def _server_url() -> str:
    url = os.environ.get("DATABASE_URL", SERVER_URL)
    return url.rsplit("/", 1)[0] + "/postgres"


def _setup_django(db: str) -> None:
    os.environ["DATABASE_URL"] = _server_url().rsplit("/", 1)[0] + "/" + db
    os.environ["AGENTKEY_AUDIT_KEY"] = BENCH_KEY
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentkey.settings.base")
    import django

    django.setup()


def _seed(events: int) -> None:
    from django.db import connection

    from audit import signing
    from audit.verifier import EVENT_FIELDS

    rng = random.Random(6)
    orgs = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(3)]
    agents = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(50)]
    tools = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(20)]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    columns = ("created_at", *[f for f in EVENT_FIELDS if f != "created_at"], "signature")
    copy = sql.SQL("COPY audit_auditevent ({}) FROM STDIN").format(
        sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    raw = connection.connection
    written = 0
    while written < events:
        batch = min(BATCH, events - written)
        with raw.cursor() as cursor, cursor.copy(copy) as out:
            for n in range(written, written + batch):
                agent, tool, org = rng.choice(agents), rng.choice(tools), orgs[n % 3]
                created = start + timedelta(milliseconds=n * 30)
                row: dict[str, Any] = {
                    "action": ACTIONS[n % len(ACTIONS)],
                    "actor_id": str(agent),
                    "actor_label": f"Agent {agent.hex[:6]}",
                    "actor_type": "agent",
                    "agent_id": str(agent),
                    "created_at": signing.canonical_time(created),
                    "ip": "2001:db8::" + format(n % 65535, "x") if n % 5 == 0 else f"203.0.113.{n % 250}",
                    "metadata": {"tool": f"tool-{tool.hex[:4]}", "n": n},
                    "org_id": str(org),
                    "request_id": f"{n:016x}",
                    "target_id": str(tool),
                    "target_label": f"Tool {tool.hex[:6]}",
                    "target_type": "tool",
                    "tool_id": str(tool),
                }
                row["ip"] = signing.canonical_ip(row["ip"])
                signature = signing.sign_event(row)
                values = [created, *[row[f] for f in columns[1:-1]], signature]
                values[columns.index("metadata")] = json.dumps(row["metadata"])
                out.write_row(values)
        if not raw.autocommit:
            raw.commit()
        written += batch
        print(f"  seeded {written:,} events", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
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
    from audit.verify import audit_verify

    settings.AGENTKEY_AUDIT_SEAL_GRACE = 0.0
    settings.AGENTKEY_AUDIT_ANCHOR_FILE = ""
    try:
        if not args.reuse:
            call_command("migrate", verbosity=0)
            started = time.monotonic()
            _seed(args.events)
            print(f"seeded {args.events:,} signed events in {time.monotonic() - started:.1f} s")
            started = time.monotonic()
            sealed = seal_checkpoints()
            print(f"sealed them into {len(sealed)} checkpoints in {time.monotonic() - started:.1f} s")
        rates = []
        for attempt in range(1, args.repeat + 1):
            started = time.monotonic()
            report = audit_verify()
            seconds = time.monotonic() - started
            if not report.ok:
                print(f"verification found problems: {dict(report.counts)}")
                return 1
            rates.append(report.events / seconds)
            print(
                f"run {attempt}: {report.events:,} events in {seconds:.2f} s = {report.events / seconds:,.0f} events/s"
            )
        print(f"median: {statistics.median(rates):,.0f} events/s over {args.repeat} runs")
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(args.db)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
