"""CSV and JSON Lines exports: the filtered set, streamed, oldest first, one query per chunk."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Role
from audit.models import Action
from grants.views.audit import EXPORT_FIELDS
from tests import factories
from tests.console.audit.conftest import console_for, org_ids

pytestmark = pytest.mark.django_db


def body(response: Any) -> str:
    assert response.status_code == 200
    assert response.streaming
    return b"".join(response.streaming_content).decode()


def csv_rows(response: Any) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body(response))))


@pytest.fixture
def events(org, agent, tool, record) -> None:
    other = factories.make_tool(org, "Notion")
    for n in range(25):
        record(Action.CREDENTIAL_VENDED, agent, tool if n % 2 else other, n=n)


def test_csv_has_a_header_and_every_event_oldest_first(org, auditor, events):
    before = sorted(org_ids(org))
    response = console_for(auditor).get("/audit/export?format=csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    disposition = response["Content-Disposition"]
    assert disposition.startswith(f'attachment; filename="agentkey-audit-{org.slug}-')
    assert disposition.endswith('.csv"')
    assert response["Cache-Control"] == "no-store"
    text = body(response)
    assert text.splitlines()[0] == ",".join(EXPORT_FIELDS)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["id"]) for r in rows] == before, "the log as it stood before the export"
    vended = next(r for r in rows if r["action"] == "credential.vended")
    assert vended["action_label"] == "Credential fetched"
    assert vended["actor_label"] == "Onboarding-Agent"
    assert json.loads(vended["metadata"]) == {"n": 0}
    assert vended["created_at"].endswith("Z")


def test_jsonl_has_one_object_per_event(org, auditor, tool, events):
    response = console_for(auditor).get(f"/audit/export?format=jsonl&tool={tool.id}")
    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert response["Content-Disposition"].endswith('.jsonl"')
    lines = body(response).splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["id"] for r in records] == sorted(org_ids(org, tool_id=tool.id))
    assert set(records[0]) == set(EXPORT_FIELDS)
    assert all(r["tool_id"] == str(tool.id) for r in records)
    assert all(r["org_id"] == str(org.id) for r in records)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_exports_follow_every_filter(org, auditor, agent, tool, events, fmt):
    query = f"agent={agent.id}&tool={tool.id}&action=credential.vended&actor={agent.id}&from=2000-01-01&to=2999-12-31"
    response = console_for(auditor).get(f"/audit/export?format={fmt}&{query}")
    if fmt == "csv":
        ids = [int(r["id"]) for r in csv_rows(response)]
    else:
        ids = [json.loads(line)["id"] for line in body(response).splitlines()]
    expected = org_ids(
        org, agent_id=agent.id, tool_id=tool.id, action="credential.vended", actor_id=str(agent.id)
    )
    assert ids == sorted(expected)
    assert len(ids) == 12


def test_the_page_links_to_the_export_of_its_filters(auditor, agent):
    page = (
        console_for(auditor).get(f"/audit/?agent={agent.id}&action=agent.created&before=99").content.decode()
    )
    assert f'href="/audit/export?format=csv&amp;action=agent.created&amp;agent={agent.id}"' in page
    assert f'href="/audit/export?format=jsonl&amp;action=agent.created&amp;agent={agent.id}"' in page


def test_the_export_streams_with_at_most_one_query_per_chunk(org, auditor, events, settings):
    settings.AGENTKEY_AUDIT_EXPORT_CHUNK = 4
    total = len(org_ids(org))
    client = console_for(auditor)
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/audit/export?format=jsonl")
        lines = body(response).splitlines()
    assert len(lines) == total
    audit_queries = [q["sql"] for q in queries.captured_queries if "audit_auditevent" in q["sql"]]
    chunks = -(-total // 4)
    assert len(audit_queries) <= chunks + 2, audit_queries  # + the ceiling, + an empty last chunk
    assert not any("OFFSET" in sql.upper() or "COUNT(" in sql.upper() for sql in audit_queries)


def test_events_written_during_an_export_are_not_in_it(org, auditor, agent, tool, events, record, settings):
    settings.AGENTKEY_AUDIT_EXPORT_CHUNK = 5
    expected = sorted(org_ids(org))
    response: Any = console_for(auditor).get("/audit/export?format=jsonl")
    stream = iter(response.streaming_content)
    first = next(stream)
    record(Action.CREDENTIAL_VENDED, agent, tool)
    lines = (first + b"".join(stream)).decode().splitlines()
    assert [json.loads(line)["id"] for line in lines] == expected


def test_spreadsheet_formulas_in_labels_are_defused(org, auditor, agent, record):
    tool = factories.make_tool(org, "=HYPERLINK(evil)")
    record(Action.CREDENTIAL_VENDED, agent, tool)
    rows = csv_rows(console_for(auditor).get(f"/audit/export?format=csv&tool={tool.id}"))
    assert {r["target_label"] for r in rows} == {"'=HYPERLINK(evil)"}
    lines = body(console_for(auditor).get(f"/audit/export?format=jsonl&tool={tool.id}")).splitlines()
    assert json.loads(lines[-1])["target_label"] == "=HYPERLINK(evil)", "JSON keeps the exact text"


def test_an_empty_export_is_just_the_header(auditor, agent):
    rows = csv_rows(console_for(auditor).get("/audit/export?format=csv&from=2999-01-01"))
    assert rows == []
    assert body(console_for(auditor).get("/audit/export?format=jsonl&from=2999-01-01")) == ""


def test_another_organizations_events_are_never_exported(org, other_org, events, stranger):
    stranger_tool = factories.make_tool(other_org, "Globex Wiki")
    ours = set(org_ids(org))
    client = console_for(factories.make_member(other_org, Role.AUDITOR))
    theirs = set(org_ids(other_org))
    everything = [
        json.loads(line)["id"] for line in body(client.get("/audit/export?format=jsonl")).splitlines()
    ]
    assert set(everything) == theirs
    assert not set(everything) & ours
    auditor = console_for(factories.make_member(org, Role.AUDITOR))
    for query in (f"agent={stranger.agent.id}", f"tool={stranger_tool.id}", f"actor={stranger.agent.id}"):
        assert body(auditor.get(f"/audit/export?format=jsonl&{query}")) == "", query
        assert csv_rows(auditor.get(f"/audit/export?format=csv&{query}")) == [], query


def test_an_auditor_may_export_and_an_approver_may_not(approver, auditor, events):
    assert console_for(auditor).get("/audit/export?format=csv").status_code == 200
    response = console_for(approver).get("/audit/export?format=csv")
    assert response.status_code == 403
    assert not getattr(response, "streaming", False)


@pytest.mark.parametrize(
    "query", ["format=xml", "format=csv&agent=nope", "format=jsonl&from=2026-02-03&to=2026-02-01"]
)
def test_a_bad_export_request_goes_back_to_the_page_with_the_filters(auditor, query):
    response = console_for(auditor).get(f"/audit/export?{query}")
    assert response.status_code == 302
    assert response["Location"].startswith("/audit/")
    assert "format=" not in response["Location"]


def test_an_export_is_itself_recorded_with_its_format_and_filters(db, org, auditor):
    from django.test import Client

    from audit.models import Action, AuditEvent

    client = Client()
    client.force_login(auditor.user)
    response: Any = client.get("/audit/export", {"format": "jsonl", "action": "credential.vended"})
    assert response.status_code == 200
    b"".join(response.streaming_content)
    event = AuditEvent.objects.filter(action=Action.AUDIT_EXPORTED).get()
    assert event.actor_label == auditor.user.email
    assert event.org_id == org.id
    assert event.metadata == {"format": "jsonl", "filters": {"action": "credential.vended"}}
