"""Seed an audit log of N events into a throwaway database and time the console's audit pages.

    .venv/bin/python bench/audit_pages.py                 # 1,000,000 events, then drop the database
    .venv/bin/python bench/audit_pages.py --events 200000 --repeat 15
    .venv/bin/python bench/audit_pages.py --keep          # keep the database for another run ...
    .venv/bin/python bench/audit_pages.py --reuse --keep  # ... measure it again without seeding
    .venv/bin/python bench/audit_pages.py --explain       # also print each page query's plan

PostgreSQL and Redis are found as for the test suite (DATABASE_URL's server, REDIS_URL). The
script creates its own database (``--db``, default ``agentkey_bench_audit``; the name must start
with ``agentkey_bench``), migrates it, creates one organization with people, agents and tools
through the services, then inserts the events with one ``INSERT … SELECT FROM generate_series``
per batch (the append-only trigger refuses UPDATE and DELETE, not INSERT). Another
organization's events (``--other-orgs``, a fraction of N) are interleaved, as in a shared
deployment. Each page is requested through Django's test client (the whole middleware and
template stack, no server), warmed up, then timed ``--repeat`` times. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import os
import re
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

DEFAULT_DB = "agentkey_bench_audit"
SERVER_URL = "postgres://postgres@127.0.0.1:5432/agentkey"
TARGET_MS = 300.0
#: How the page shows an event's id, and its "Older" link.
ROW_ID = re.compile(r'<div class="muted">#(\d+)</div>')
OLDER = re.compile(r'<a class="button small" rel="next" href="([^"]+)"')
BATCH = 100_000
SPAN_DAYS = 365

#: (action, cumulative share, who acts). Roughly a busy organization: mostly credential fetches.
ACTIONS: list[tuple[str, float, str]] = [
    ("credential.vended", 0.72, "agent"),
    ("grant.requested", 0.80, "agent"),
    ("grant.approved", 0.86, "human"),
    ("grant.denied", 0.875, "human"),
    ("grant.revoked", 0.885, "human"),
    ("grant.expired", 0.895, "system"),
    ("tool_suggestion.created", 0.915, "agent"),
    ("tool_suggestion.supported", 0.935, "agent"),
    ("tool_instruction_suggestion.created", 0.945, "agent"),
    ("agent.key_rotated", 0.955, "human"),
    ("auth.rejected_suspended", 0.960, "agent"),
    ("tool.updated", 0.975, "human"),
    ("tool.guide_updated", 0.985, "human"),
    ("tool.credential_rotated", 0.990, "human"),
    ("agent.suspended", 0.995, "human"),
    ("member.invited", 1.0, "human"),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000, help="events of the measured organization")
    parser.add_argument(
        "--other-orgs", type=float, default=0.1, help="other organizations' events, as a fraction of --events"
    )
    parser.add_argument("--agents", type=int, default=60)
    parser.add_argument("--tools", type=int, default=30)
    parser.add_argument("--people", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=9, help="timed runs per page (at least 7)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--db", default=DEFAULT_DB, help="the bench database (dropped at the end)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--reuse", action="store_true", help="measure an existing (kept) database, no seeding"
    )
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of each page query")
    args = parser.parse_args(argv)
    if not args.db.startswith("agentkey_bench"):
        parser.error("--db must start with agentkey_bench (the database is dropped afterwards)")
    if args.repeat < 7:
        parser.error("--repeat must be at least 7")
    return args


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def server_admin(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(with_database(url, "postgres"), autocommit=True)


def database_exists(url: str, name: str) -> bool:
    with server_admin(url) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def recreate_database(url: str, name: str) -> None:
    with server_admin(url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(url: str, name: str) -> None:
    with server_admin(url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class BenchError(Exception):
    pass


# --- seeding -------------------------------------------------------------------------------------


@dataclass
class Cast:
    """Who and what the events are about: parallel arrays, indexed 1-based from SQL."""

    org_id: str
    agent_ids: list[str]
    agent_names: list[str]
    tool_ids: list[str]
    tool_names: list[str]
    person_ids: list[str]
    person_emails: list[str]


def make_cast(name: str, agents: int, tools: int, people: int) -> tuple[Cast, Any]:
    """An organization made through the services, as the product would make it."""
    from accounts.models import Role, User
    from accounts.permissions import Operator
    from accounts.services import agent_create, membership_add, org_create
    from grants.services import tool_add

    operator = Operator(label="bench")
    slug = name.lower().replace(" ", "-")
    owner = User.objects.create_user(f"owner@{slug}.example.com")
    org = org_create(name=name, owner=owner)
    humans = [owner]
    roles = [Role.ADMIN, Role.APPROVER, Role.AUDITOR]
    for n in range(people - 1):
        user = User.objects.create_user(f"person{n}@{slug}.example.com")
        membership_add(org=org, user=user, role=roles[n % len(roles)], actor=operator)
        humans.append(user)
    made_agents = [
        agent_create(org=org, name=f"{slug}-agent-{n:03d}", actor=operator, owner=owner).agent
        for n in range(agents)
    ]
    made_tools = [
        tool_add(
            org=org,
            actor=operator,
            name=f"{name} tool {n:03d}",
            credential=f"bench_{secrets.token_urlsafe(16)}",
        ).tool
        for n in range(tools)
    ]
    cast = Cast(
        org_id=str(org.id),
        agent_ids=[str(a.id) for a in made_agents],
        agent_names=[a.name for a in made_agents],
        tool_ids=[str(t.id) for t in made_tools],
        tool_names=[t.name for t in made_tools],
        person_ids=[str(u.pk) for u in humans],
        person_emails=[u.email for u in humans],
    )
    return cast, owner


def _action_case() -> str:
    cases = " ".join(f"WHEN s.ra < {share} THEN '{action}'" for action, share, _ in ACTIONS)
    return f"CASE {cases} ELSE 'member.invited' END"


def _actor_case() -> str:
    agents = ", ".join(f"'{a}'" for a, _, who in ACTIONS if who == "agent")
    system = ", ".join(f"'{a}'" for a, _, who in ACTIONS if who == "system")
    return f"CASE WHEN a.action IN ({agents}) THEN 'agent' WHEN a.action IN ({system}) THEN 'system' ELSE 'human' END"


# One statement per batch. Each row picks an organization (the measured one, or with
# probability `other` the other one), an action by ACTIONS' shares, a skewed agent and tool
# (a few busy agents, a long tail) and a person; ids follow created_at, as in production.
SEED_SQL = """
INSERT INTO audit_auditevent (
    created_at, org_id, actor_type, actor_id, actor_label, action, target_type, target_id,
    target_label, agent_id, tool_id, metadata, ip, request_id, signature
)
SELECT
    %(start)s::timestamptz + (s.g::float8 / %(total)s) * %(span)s::interval,
    o.org_id,
    w.who,
    CASE w.who WHEN 'agent' THEN o.agent_id WHEN 'human' THEN o.person_id ELSE '' END,
    CASE w.who WHEN 'agent' THEN o.agent_name WHEN 'human' THEN o.person_email ELSE 'grants expiry job' END,
    a.action,
    t.target_type,
    CASE t.target_type
        WHEN 'tool' THEN o.tool_id WHEN 'agent' THEN o.agent_id
        WHEN 'access_grant' THEN md5(o.agent_id || o.tool_id)::uuid::text
        ELSE md5(s.g::text)::uuid::text END,
    CASE t.target_type
        WHEN 'tool' THEN o.tool_name WHEN 'agent' THEN o.agent_name
        WHEN 'access_grant' THEN o.agent_name || ' → ' || o.tool_name
        WHEN 'invitation' THEN 'invitee' || (s.g %% 1000) || '@example.com'
        ELSE 'Suggested tool ' || (s.g %% 500) END,
    CASE WHEN t.target_type IN ('tool', 'invitation') AND w.who <> 'agent' THEN NULL ELSE o.agent_id::uuid END,
    CASE WHEN t.target_type IN ('agent', 'invitation', 'tool_suggestion') THEN NULL ELSE o.tool_id::uuid END,
    CASE
        WHEN a.action = 'credential.vended' THEN jsonb_build_object('tool_name', o.tool_name)
        WHEN a.action LIKE 'grant.%%' THEN jsonb_build_object('tool_name', o.tool_name, 'reason', 'Weekly report for the team')
        WHEN a.action = 'tool.updated' THEN jsonb_build_object('fields', jsonb_build_array('description', 'url'))
        ELSE '{}'::jsonb END,
    CASE WHEN w.who = 'agent' THEN ('10.0.' || (s.ai %% 250) || '.' || (s.g %% 250))::inet END,
    substr(md5(s.g::text || 'r'), 1, 32),
    ''
FROM (
    SELECT g,
           random() AS ra,
           floor(power(random(), 2) * %(agents)s)::int + 1 AS ai,
           floor(power(random(), 1.5) * %(tools)s)::int + 1 AS ti,
           floor(random() * %(people)s)::int + 1 AS pi,
           random() < %(other)s AS elsewhere
    FROM generate_series(%(first)s, %(last)s) AS g
) AS s
CROSS JOIN LATERAL (SELECT __ACTION_CASE__ AS action) AS a
CROSS JOIN LATERAL (SELECT __ACTOR_CASE__ AS who) AS w
CROSS JOIN LATERAL (SELECT CASE
    WHEN a.action IN ('credential.vended', 'tool.updated', 'tool.guide_updated', 'tool.credential_rotated') THEN 'tool'
    WHEN a.action LIKE 'grant.%%' THEN 'access_grant'
    WHEN a.action LIKE 'tool_suggestion.%%' THEN 'tool_suggestion'
    WHEN a.action LIKE 'tool_instruction%%' THEN 'guide_suggestion'
    WHEN a.action = 'member.invited' THEN 'invitation'
    ELSE 'agent' END AS target_type) AS t
CROSS JOIN LATERAL (SELECT
    CASE WHEN s.elsewhere THEN %(other_org)s ELSE %(org)s END::uuid AS org_id,
    CASE WHEN s.elsewhere THEN (%(o_agent_ids)s::text[])[1 + s.ai %% %(o_agents)s] ELSE (%(agent_ids)s::text[])[s.ai] END AS agent_id,
    CASE WHEN s.elsewhere THEN (%(o_agent_names)s::text[])[1 + s.ai %% %(o_agents)s] ELSE (%(agent_names)s::text[])[s.ai] END AS agent_name,
    CASE WHEN s.elsewhere THEN (%(o_tool_ids)s::text[])[1 + s.ti %% %(o_tools)s] ELSE (%(tool_ids)s::text[])[s.ti] END AS tool_id,
    CASE WHEN s.elsewhere THEN (%(o_tool_names)s::text[])[1 + s.ti %% %(o_tools)s] ELSE (%(tool_names)s::text[])[s.ti] END AS tool_name,
    CASE WHEN s.elsewhere THEN (%(o_person_ids)s::text[])[1] ELSE (%(person_ids)s::text[])[s.pi] END AS person_id,
    CASE WHEN s.elsewhere THEN (%(o_person_emails)s::text[])[1] ELSE (%(person_emails)s::text[])[s.pi] END AS person_email
) AS o
ORDER BY s.g
"""


def seed_events(main: Cast, other: Cast, events: int, other_share: float) -> int:
    """Insert the events in batches; returns how many rows were written in all."""
    from django.db import connection

    total = int(events * (1 + other_share))
    # Among all rows, the other organization's share, so that the measured one gets about `events`.
    other_probability = other_share / (1 + other_share)
    start = datetime.now(UTC) - timedelta(days=SPAN_DAYS)
    statement = SEED_SQL.replace("__ACTION_CASE__", _action_case()).replace("__ACTOR_CASE__", _actor_case())
    params: dict[str, Any] = {
        "start": start,
        "total": total,
        "span": timedelta(days=SPAN_DAYS),
        "agents": len(main.agent_ids),
        "tools": len(main.tool_ids),
        "people": len(main.person_ids),
        "other": other_probability,
        "org": main.org_id,
        "agent_ids": main.agent_ids,
        "agent_names": main.agent_names,
        "tool_ids": main.tool_ids,
        "tool_names": main.tool_names,
        "person_ids": main.person_ids,
        "person_emails": main.person_emails,
        "other_org": other.org_id,
        "o_agents": len(other.agent_ids),
        "o_tools": len(other.tool_ids),
        "o_agent_ids": other.agent_ids,
        "o_agent_names": other.agent_names,
        "o_tool_ids": other.tool_ids,
        "o_tool_names": other.tool_names,
        "o_person_ids": other.person_ids,
        "o_person_emails": other.person_emails,
    }
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(0.42)")
        for first in range(1, total + 1, BATCH):
            last = min(total, first + BATCH - 1)
            began = time.perf_counter()
            cursor.execute(statement, {**params, "first": first, "last": last})
            print(f"  rows {first:>9,} to {last:>9,}  {time.perf_counter() - began:5.1f} s", flush=True)
        began = time.perf_counter()
        cursor.execute("VACUUM (ANALYZE) audit_auditevent")
        print(f"  vacuum analyze  {time.perf_counter() - began:5.1f} s", flush=True)
    return total


# --- measuring -----------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    rows: int
    queries: int
    timings: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.timings)


def measure(get: Callable[[], Any], name: str, warmup: int, repeat: int) -> Result:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(warmup):
        get()
    with CaptureQueriesContext(connection) as queries:
        response = get()
    count = len(queries)  # now: the next request resets the connection's query log
    if response.status_code != 200:
        raise BenchError(f"{name}: HTTP {response.status_code}")
    rows = len(ROW_ID.findall(response.content.decode()))
    timings = []
    for _ in range(repeat):
        began = time.perf_counter()
        response = get()
        timings.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200:
            raise BenchError(f"{name}: HTTP {response.status_code}")
    return Result(name, rows, count, timings)


def explain(get: Callable[[], Any]) -> str:
    """EXPLAIN ANALYZE of the page's event query (the one ordered by id with a LIMIT)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        get()
    page = [
        q["sql"] for q in queries.captured_queries if "audit_auditevent" in q["sql"] and "LIMIT" in q["sql"]
    ]
    lines = []
    with connection.cursor() as cursor:
        for query in page:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + query)
            lines += [row[0] for row in cursor.fetchall()]
    return "\n".join(lines)


def older_link(page: str) -> str:
    found = OLDER.search(page)
    if found is None:
        raise BenchError("the page has no Older link: seed more events")
    return html.unescape(found.group(1))


def nth_page(client: Any, url: str, n: int) -> str:
    for _ in range(n - 1):
        url = older_link(client.get(url).content.decode())
    return url


def scenarios(client: Any, cast: Cast) -> list[tuple[str, str]]:
    """The pages to time: the newest page, each filter, a date range, the 10th page."""
    from audit.models import AuditEvent

    busiest_agent, quietest_agent = cast.agent_ids[0], cast.agent_ids[-1]
    busiest_tool = cast.tool_ids[0]
    person = cast.person_ids[1]
    newest = (
        AuditEvent.objects.filter(org_id=cast.org_id).order_by("-id").values_list("created_at", flat=True)[0]
    )
    week_end = (newest - timedelta(days=SPAN_DAYS // 2)).date()
    week_start = week_end - timedelta(days=6)
    dates = f"from={week_start}&to={week_end}"
    pages = [
        ("first page", "/audit/"),
        ("agent (busiest)", f"/audit/?agent={busiest_agent}"),
        ("agent (quietest)", f"/audit/?agent={quietest_agent}"),
        ("action (common: credential.vended)", "/audit/?action=credential.vended"),
        ("action (rare: agent.suspended)", "/audit/?action=agent.suspended"),
        ("tool (busiest)", f"/audit/?tool={busiest_tool}"),
        ("actor (a person)", f"/audit/?actor={person}"),
        ("date range (one week, mid-year)", f"/audit/?{dates}"),
        ("date range + agent", f"/audit/?{dates}&agent={quietest_agent}"),
        ("agent + rare action", f"/audit/?agent={quietest_agent}&action=grant.denied"),
        # An empty intersection of two filters: the worst case for a LIMIT query.
        ("agent + action, no match", f"/audit/?agent={busiest_agent}&action=member.invited"),
        ("actor: the system", "/audit/?actor=system"),
    ]
    pages.append(("10th keyset page", nth_page(client, "/audit/", 10)))
    pages.append(("10th keyset page, by tool", nth_page(client, f"/audit/?tool={busiest_tool}", 10)))
    return pages


def export_first_chunk(client: Any) -> float:
    began = time.perf_counter()
    response = client.get("/audit/export?format=csv")
    stream = iter(response.streaming_content)
    next(stream)  # the header
    next(stream)  # the first chunk of rows
    elapsed = (time.perf_counter() - began) * 1000
    response.close()
    return elapsed


def run(args: argparse.Namespace, server: str) -> int:
    import django

    os.environ["DATABASE_URL"] = with_database(server, args.db)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentkey.settings.test")
    django.setup()

    from django.core.management import call_command
    from django.test import Client

    from accounts.models import Organization, User
    from audit.models import AuditEvent

    if args.reuse:
        org = Organization.objects.get(slug="bench-corp")
        owner = User.objects.get(email="owner@bench-corp.example.com")
        from accounts.selectors import agents_for_org
        from catalog.selectors import tools_for_org

        agents = list(agents_for_org(org.id).order_by("name"))
        tools = list(tools_for_org(org.id).order_by("name"))
        main = Cast(
            org_id=str(org.id),
            agent_ids=[str(a.id) for a in agents],
            agent_names=[a.name for a in agents],
            tool_ids=[str(t.id) for t in tools],
            tool_names=[t.name for t in tools],
            person_ids=[
                str(pk) for pk in org.memberships.order_by("created_at").values_list("user_id", flat=True)
            ],
            person_emails=[],
        )
    else:
        began = time.perf_counter()
        call_command("migrate", verbosity=0, interactive=False)
        print(f"migrated in {time.perf_counter() - began:.1f} s")
        main, owner = make_cast("Bench Corp", args.agents, args.tools, args.people)
        other, _ = make_cast("Other Org", 10, 5, 2)
        print(f"seeding {args.events:,} events (+{args.other_orgs:.0%} for another organization) …")
        began = time.perf_counter()
        seed_events(main, other, args.events, args.other_orgs)
        print(f"seeded in {time.perf_counter() - began:.1f} s")

    in_org = AuditEvent.objects.filter(org_id=main.org_id).count()
    in_all = AuditEvent.objects.count()
    print(f"\naudit events: {in_org:,} in the measured organization, {in_all:,} in all\n")

    client = Client()
    client.force_login(owner)
    results = []
    for name, url in scenarios(client, main):
        results.append(measure(partial(client.get, url), name, args.warmup, args.repeat))
        if args.explain:
            print(f"--- {name}: {url}")
            print(explain(partial(client.get, url)))
    print(f"{'page':<38}{'rows':>5}{'queries':>9}{'min ms':>9}{'median ms':>11}{'max ms':>9}")
    for r in results:
        print(
            f"{r.name:<38}{r.rows:>5}{r.queries:>9}{min(r.timings):>9.1f}{r.median:>11.1f}{max(r.timings):>9.1f}"
        )
    ttfb = [export_first_chunk(client) for _ in range(args.repeat)]
    print(f"\nCSV export of the whole log, first 2,000 rows: median {statistics.median(ttfb):.1f} ms")
    slow = [r for r in results if r.median >= TARGET_MS]
    verdict = "all medians under" if not slow else f"{len(slow)} page(s) at or over"
    print(f"{verdict} {TARGET_MS:.0f} ms ({args.repeat} timed runs each after {args.warmup} warm-up)")
    return 1 if slow else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server = os.environ.get("DATABASE_URL", SERVER_URL)
    if args.reuse:
        if not database_exists(server, args.db):
            print(f"--reuse: database {args.db} does not exist; run once with --keep first.")
            return 2
    else:
        recreate_database(server, args.db)
        print(f"created database {args.db}")
    try:
        return run(args, server)
    finally:
        with contextlib.suppress(Exception):  # Django may not be set up if an early step failed
            from django.db import connections

            connections.close_all()
        if args.keep:
            print(f"kept database {args.db} (drop it with: dropdb {args.db}, or run again without --keep)")
        else:
            drop_database(server, args.db)
            print(f"dropped database {args.db}")


if __name__ == "__main__":
    sys.exit(main())
