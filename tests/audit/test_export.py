"""manage.py audit_export: JSONL and CSV, oldest first, --since and --org (DESIGN §7)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from audit.management.commands.audit_export import FIELDS
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

ORG = uuid.UUID("0191d6c8-0000-7000-8000-00000000000a")
OTHER_ORG = uuid.UUID("0191d6c8-0000-7000-8000-00000000000b")


def _at(day: int, month: int = 1, hour: int = 0) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def _event(created_at: datetime, org_id: uuid.UUID | None, action: str, **fields: Any) -> AuditEvent:
    return AuditEvent.objects.create(
        created_at=created_at, org_id=org_id, actor_type="system", action=action, **fields
    )


@pytest.fixture
def history() -> dict[str, AuditEvent]:
    """Events inserted in time order, as the log grows (ids and created_at agree)."""
    return {
        "jan10": _event(
            _at(10),
            ORG,
            "grant.requested",
            actor_label="Onboarding-Agent",
            metadata={"note": "line one\nline two", "key": "🔑", "quote": 'say "hi", ok'},
            ip="203.0.113.9",
            request_id="abcdefgh12345678",
        ),
        "jan20": _event(_at(20), ORG, "grant.approved", actor_label="ops@example.com"),
        "jan25-other": _event(_at(25), OTHER_ORG, "grant.approved"),
        "feb01": _event(_at(1, month=2), ORG, "credential.vended", ip="2001:db8::1"),
        "feb02-system": _event(_at(2, month=2), None, "vault.master_key_rotated"),
    }


def _export(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("audit_export", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _jsonl(*args: str) -> list[dict[str, Any]]:
    text, _ = _export(*args)
    assert text.endswith("\n") or text == ""
    return [json.loads(line) for line in text.splitlines()]


def test_jsonl_is_one_object_per_line_oldest_first(history: dict[str, AuditEvent]) -> None:
    text, err = _export()
    lines = text.splitlines()
    records = [json.loads(line) for line in lines]
    assert len(lines) == AuditEvent.objects.count()
    assert [r["id"] for r in records] == sorted(r["id"] for r in records)
    assert err.strip() == f"exported {len(lines)} events"

    mine = [r for r in records if r["id"] >= history["jan10"].id]
    assert [r["action"] for r in mine] == [e.action for e in history.values()]
    first = mine[0]
    assert list(first) == sorted(FIELDS)
    assert first == {
        "id": history["jan10"].id,
        "created_at": "2026-01-10T00:00:00+00:00",
        "org_id": str(ORG),
        "actor_type": "system",
        "actor_id": "",
        "actor_label": "Onboarding-Agent",
        "action": "grant.requested",
        "target_type": "",
        "target_id": "",
        "target_label": "",
        "agent_id": None,
        "tool_id": None,
        "metadata": {"note": "line one\nline two", "key": "🔑", "quote": 'say "hi", ok'},
        "ip": "203.0.113.9",
        "request_id": "abcdefgh12345678",
        "signature": "",
    }
    assert mine[-1]["org_id"] is None
    assert mine[-2]["ip"] == "2001:db8::1"


def test_org_filter_keeps_only_that_organization(history: dict[str, AuditEvent]) -> None:
    records = _jsonl("--org", str(ORG))
    assert [r["id"] for r in records] == [history[k].id for k in ("jan10", "jan20", "feb01")]
    assert {r["org_id"] for r in records} == {str(ORG)}
    assert [r["id"] for r in _jsonl("--org", str(OTHER_ORG))] == [history["jan25-other"].id]
    assert _jsonl("--org", str(uuid.uuid4())) == []


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("2026-01-15", ["jan20", "feb01"]),
        ("2026-01-20", ["jan20", "feb01"]),
        ("2026-01-20T00:00:00Z", ["jan20", "feb01"]),
        ("2026-01-20T00:00:01Z", ["feb01"]),
        ("2026-01-20T00:00:00", ["jan20", "feb01"]),
        ("2026-01-20T01:00:00+01:00", ["jan20", "feb01"]),
        ("2026-01-20T01:00:00+00:00", ["feb01"]),
        ("2026-03-01", []),
        ("2025-12-31", ["jan10", "jan20", "feb01"]),
    ],
)
def test_since_keeps_events_at_or_after_the_instant(
    history: dict[str, AuditEvent], since: str, expected: list[str]
) -> None:
    records = _jsonl("--since", since, "--org", str(ORG))
    assert [r["id"] for r in records] == [history[k].id for k in expected]


def test_since_without_org_spans_every_organization(history: dict[str, AuditEvent]) -> None:
    records = _jsonl("--since", "2026-01-21")
    assert [r["id"] for r in records] == [history[k].id for k in ("jan25-other", "feb01", "feb02-system")]


def test_csv_has_a_header_and_one_row_per_event(history: dict[str, AuditEvent]) -> None:
    text, err = _export("--format", "csv", "--org", str(ORG))
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == FIELDS
    body = [dict(zip(FIELDS, row, strict=True)) for row in rows[1:]]
    assert [int(r["id"]) for r in body] == [history[k].id for k in ("jan10", "jan20", "feb01")]
    first = body[0]
    assert first["created_at"] == "2026-01-10T00:00:00+00:00"
    assert first["org_id"] == str(ORG)
    assert first["action"] == "grant.requested"
    assert json.loads(first["metadata"]) == {
        "note": "line one\nline two",
        "key": "🔑",
        "quote": 'say "hi", ok',
    }
    assert first["metadata"] == json.dumps(json.loads(first["metadata"]), sort_keys=True)
    assert (first["ip"], first["request_id"]) == ("203.0.113.9", "abcdefgh12345678")
    assert body[1]["ip"] == ""
    assert err.strip() == "exported 3 events"


def test_csv_with_no_events_is_just_the_header(history: dict[str, AuditEvent]) -> None:
    text, _ = _export("--format", "csv", "--since", "2030-01-01")
    assert list(csv.reader(io.StringIO(text, newline=""))) == [FIELDS]


@pytest.mark.parametrize("since", ["yesterday", "2026-02-30", "2026-13-01T00:00:00", "2026-01-31T25:00:00Z"])
def test_bad_since_fails_with_a_clear_message(since: str) -> None:
    with pytest.raises(CommandError) as caught:
        _export("--since", since)
    assert str(caught.value) == (f"--since {since!r} is not a date. Use 2026-01-31 or 2026-01-31T12:00:00Z.")

    err = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("audit_export", "--json", "--since", since, stdout=io.StringIO(), stderr=err)
    assert exited.value.code == 1
    assert json.loads(err.getvalue()) == {
        "error": f"--since {since!r} is not a date.",
        "hint": "Use 2026-01-31 or 2026-01-31T12:00:00Z.",
    }


def test_bad_org_fails_with_a_clear_message() -> None:
    with pytest.raises(CommandError, match="'acme' is not a valid organization id"):
        _export("--org", "acme")


def test_bad_since_exits_non_zero_from_the_shell() -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "audit_export", "--since", "yesterday"],
        cwd=Path(settings.BASE_DIR),
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "agentkey.settings.test"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "--since 'yesterday' is not a date." in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
