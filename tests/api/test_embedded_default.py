"""The vend's hand-built statements (agentkey/core/statements.py) on the embedded default, SQLite.

The rest of the suite runs on PostgreSQL; `make run` runs on SQLite, where UUIDs are text and
datetimes need converters. This runs the demo the README gives, in a subprocess on a fresh
SQLite file: seed it, vend, and read back what the vend wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.embedded import run_on_sqlite

SCRIPT = r"""
import io, json, uuid
import django
django.setup()
from django.core.management import call_command
from django.test import Client
from django.test.utils import setup_test_environment

setup_test_environment()
call_command("migrate", verbosity=0)
out = io.StringIO()
call_command("seed_demo", "--json", stdout=out)
seed = json.loads(out.getvalue())
client = Client()
path = f"/api/tools/{seed['tool_id']}/credentials"
bearer = {"HTTP_AUTHORIZATION": "Bearer " + seed["api_key"]}

from accounts import keys
from accounts.models import Agent, AgentKey
from accounts.services import agent_authenticate
from audit.models import AuditEvent
from grants.models import AccessGrant
agent, key = agent_authenticate(token=seed["api_key"])
def same_as_orm(instance):  # every column as the ORM reads it back, converters included
    orm = type(instance).objects.get(pk=instance.pk)
    return [(f.attname, getattr(instance, f.attname) == getattr(orm, f.attname))
            for f in type(instance)._meta.concrete_fields]
vend = client.get(path, **bearer)
row = AuditEvent.objects.filter(action="credential.vended").get()
grant = AccessGrant.objects.get()
print(json.dumps({
    "seed": seed,
    "agent": [str(agent.id), agent.status, type(agent.created_at).__name__,
              agent.created_at.tzinfo is not None, key.key_hash == keys.digest(seed["api_key"])],
    "columns": same_as_orm(agent) + same_as_orm(key),
    "key_agent_cached": key.agent is agent,
    "vend": [vend.status_code, vend.json()],
    "row": [row.id, str(row.agent_id), str(row.tool_id), row.metadata, len(row.signature) > 0],
    "grant_id": str(grant.id),
    "unknown_tool": client.get(f"/api/tools/{uuid.uuid4()}/credentials", **bearer).status_code,
    "bad_key": client.get(path, HTTP_AUTHORIZATION="Bearer sk_agent_" + "x" * 40).status_code,
}))
"""


def test_the_demo_vends_on_sqlite_through_the_hand_built_statements(tmp_path: Path) -> None:
    result = run_on_sqlite(tmp_path / "embedded.sqlite3", "-c", SCRIPT)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    seed = out["seed"]

    # The key lookup built an Agent from text columns: a real UUID, an aware datetime.
    assert out["agent"] == [seed["agent_id"], "active", "datetime", True, True]
    assert out["columns"]
    assert all(equal for _name, equal in out["columns"]), out["columns"]
    assert out["key_agent_cached"] is True

    status, body = out["vend"]
    assert status == 200, body
    assert body["tool_id"] == seed["tool_id"]
    assert body["credential"].startswith("demo-")
    assert body["instructions"]  # the usage guide came back with the tool's columns

    # The audit row went in through the hand-built INSERT: an id, the refs, the metadata.
    row_id, agent_id, tool_id, metadata, signed = out["row"]
    assert isinstance(row_id, int)
    assert row_id > 0
    assert (agent_id, tool_id) == (seed["agent_id"], seed["tool_id"])
    assert metadata == {
        "tool_id": seed["tool_id"],
        "tool_name": body["tool_name"],
        "grant_id": out["grant_id"],
    }
    assert signed

    assert out["unknown_tool"] == 404
    assert out["bad_key"] == 401
