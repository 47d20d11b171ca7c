"""Rotating the master key re-wraps data keys only, and the app keeps serving meanwhile (DESIGN §3)."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connection

from audit.models import Action, ActorType
from grants.models import AccessGrant
from grants.services import grant_assign
from tests.factories import make_tool, new_credential
from tests.support.http import AgentClient
from vault.models import Secret
from vault.services import secret_create, secret_reveal

KEY_A = django_settings.TEST_MASTER_KEY_A
KEY_B = django_settings.TEST_MASTER_KEY_B
B_THEN_A = f"{KEY_B},{KEY_A}"

Row = tuple[str, bytes, bytes]


def _rotate(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("rotate_master_key", "--json", *args, stdout=out)
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


def _rows() -> dict[uuid.UUID, Row]:
    return {s.id: (s.kek_id, bytes(s.wrapped_dek), bytes(s.ciphertext)) for s in Secret.objects.all()}


def _reveal(secret_id: uuid.UUID) -> str:
    return secret_reveal(secret=Secret.objects.get(pk=secret_id))


@pytest.mark.django_db
def test_rotation_rewraps_every_data_key_and_old_key_can_be_retired(
    api, agent, tool, credential, per_agent_tool, operator, audit_log, settings
) -> None:
    grant_assign(agent=agent, tool=tool, actor=operator)
    per_agent_value = new_credential("ghp")
    per_agent_grant = grant_assign(
        agent=agent, tool=per_agent_tool, actor=operator, credential=per_agent_value
    )
    values = {secret_create(plaintext=v).id: v for v in (new_credential() for _ in range(5))}
    assert tool.secret_id is not None
    assert per_agent_grant.secret_id is not None
    values[tool.secret_id] = credential
    values[per_agent_grant.secret_id] = per_agent_value
    before = _rows()
    assert set(before) == set(values)
    assert {kek for kek, _, _ in before.values()} == {"testA"}

    settings.AGENTKEY_MASTER_KEYS = B_THEN_A
    audit_log.mark()
    report = _rotate()

    assert report == {
        "active_key": "testB",
        "rewrapped": len(values),
        "remaining_under_old_keys": 0,
        "mfa_secrets_resealed": 0,
        "keys_in_use": ["testB"],
        "retirable_keys": ["testA"],
    }
    after = _rows()
    assert set(after) == set(before)
    for secret_id, (kek_id, wrapped, ciphertext) in after.items():
        assert kek_id == "testB"
        assert ciphertext == before[secret_id][2], "only the data key may change"
        assert wrapped != before[secret_id][1]
    [event] = audit_log.new()
    assert event.action == Action.MASTER_KEY_ROTATED
    assert event.actor_type == ActorType.SYSTEM
    assert event.actor_label.startswith("manage.py (")
    assert event.org_id is None
    assert event.metadata == {
        "active_key": "testB",
        "rewrapped": len(values),
        "remaining": 0,
        "mfa_resealed": 0,
        "complete": True,
    }

    settings.AGENTKEY_MASTER_KEYS = KEY_B
    assert {secret_id: _reveal(secret_id) for secret_id in values} == values
    shared = api.credentials(tool.id)
    assert shared.status_code == 200
    assert shared.json()["credential"] == credential
    own = api.credentials(per_agent_tool.id)
    assert own.status_code == 200
    assert own.json()["credential"] == per_agent_value


@pytest.mark.django_db
@pytest.mark.parametrize("batch_size", ["1", "2", "3", "500"])
def test_rotation_pages_through_every_row_whatever_the_batch_size(settings, batch_size: str) -> None:
    values = {secret_create(plaintext=v).id: v for v in (new_credential() for _ in range(7))}
    settings.AGENTKEY_MASTER_KEYS = B_THEN_A

    report = _rotate("--batch-size", batch_size)

    assert (report["rewrapped"], report["remaining_under_old_keys"]) == (7, 0)
    assert set(Secret.objects.values_list("kek_id", flat=True)) == {"testB"}
    settings.AGENTKEY_MASTER_KEYS = KEY_B
    assert {secret_id: _reveal(secret_id) for secret_id in values} == values


@pytest.mark.django_db
def test_rows_already_under_the_active_key_are_left_alone(settings) -> None:
    old = secret_create(plaintext=new_credential())
    settings.AGENTKEY_MASTER_KEYS = B_THEN_A
    current = secret_create(plaintext=new_credential())
    before = _rows()

    report = _rotate()

    assert report["rewrapped"] == 1
    after = _rows()
    assert after[current.id] == before[current.id]
    assert after[old.id][0] == "testB"
    assert _rotate()["rewrapped"] == 0, "a second run has nothing left to do"


@pytest.mark.django_db
def test_nothing_is_retirable_while_rows_remain_under_an_old_key(settings) -> None:
    secret_create(plaintext=new_credential())
    settings.AGENTKEY_MASTER_KEYS = f"{KEY_A},{KEY_B}"
    report = _rotate()
    assert report == {
        "active_key": "testA",
        "rewrapped": 0,
        "remaining_under_old_keys": 0,
        "mfa_secrets_resealed": 0,
        "keys_in_use": ["testA"],
        "retirable_keys": ["testB"],
    }


@pytest.mark.django_db
def test_with_no_secrets_every_old_key_is_retirable_but_never_the_active_one(settings) -> None:
    settings.AGENTKEY_MASTER_KEYS = B_THEN_A
    assert _rotate() == {
        "active_key": "testB",
        "rewrapped": 0,
        "remaining_under_old_keys": 0,
        "mfa_secrets_resealed": 0,
        "keys_in_use": [],
        "retirable_keys": ["testA"],
    }


@pytest.mark.django_db
def test_rotation_without_the_old_key_fails_and_changes_nothing(settings, audit_log) -> None:
    secret = secret_create(plaintext=new_credential())
    before = _rows()
    settings.AGENTKEY_MASTER_KEYS = KEY_B
    audit_log.mark()

    err = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("rotate_master_key", "--json", stdout=io.StringIO(), stderr=err)
    assert exited.value.code == 1
    failure = json.loads(err.getvalue())
    assert "'testA'" in failure["error"]
    assert failure["hint"] == "Check AGENTKEY_MASTER_KEYS."
    assert KEY_A.split(":", 1)[1] not in err.getvalue()
    assert KEY_B.split(":", 1)[1] not in err.getvalue()

    with pytest.raises(CommandError, match="'testA' is not loaded"):
        call_command("rotate_master_key", stdout=io.StringIO())
    assert _rows() == before
    # Both failed attempts are on record, and say that nothing was re-wrapped.
    events = audit_log.new()
    assert [e.action for e in events] == [Action.MASTER_KEY_ROTATED] * 2
    assert [e.metadata for e in events] == [{"active_key": "testB", "rewrapped": 0, "complete": False}] * 2
    settings.AGENTKEY_MASTER_KEYS = B_THEN_A
    assert Secret.objects.get(pk=secret.pk).kek_id == "testA"


@pytest.mark.django_db
def test_a_rotation_that_fails_part_way_is_audited_with_its_progress(settings, audit_log) -> None:
    good = [secret_create(plaintext=new_credential()) for _ in range(3)]
    orphan = secret_create(plaintext=new_credential())  # created last: the last row in id order
    Secret.objects.filter(pk=orphan.pk).update(kek_id="retired")
    settings.AGENTKEY_MASTER_KEYS = B_THEN_A
    audit_log.mark()
    with pytest.raises(CommandError, match="'retired' is not loaded"):
        call_command("rotate_master_key", "--batch-size", "1", stdout=io.StringIO())
    assert all(Secret.objects.get(pk=s.pk).kek_id == "testB" for s in good), "finished batches stay committed"
    [event] = audit_log.new()
    assert (event.action, event.metadata) == (
        Action.MASTER_KEY_ROTATED,
        {"active_key": "testB", "rewrapped": 3, "complete": False},
    )


@pytest.mark.django_db
def test_rotation_with_a_broken_key_configuration_is_a_clear_error(settings) -> None:
    secret_create(plaintext=new_credential())
    before = _rows()
    settings.AGENTKEY_MASTER_KEYS = f"testB:not*base64,{KEY_A}"
    with pytest.raises(
        CommandError, match=r"master keys misconfigured: master key #1 \('testB'\) is not valid"
    ):
        call_command("rotate_master_key", stdout=io.StringIO())
    assert _rows() == before


@pytest.mark.django_db
@pytest.mark.parametrize("batch_size", ["0", "-1", "10001"])
def test_batch_size_out_of_range_is_refused(batch_size: str) -> None:
    with pytest.raises(CommandError, match="--batch-size must be between 1 and 10000"):
        call_command("rotate_master_key", f"--batch-size={batch_size}", stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
def test_vending_keeps_working_while_the_master_key_rotates(issued, agent, org, operator, settings) -> None:
    settings.AGENTKEY_RATELIMITS = {
        **settings.AGENTKEY_RATELIMITS,
        "preauth": "100000/m",
        "credential": "100000/m",
    }
    expected: dict[uuid.UUID, str] = {}
    for n in range(5):
        value = new_credential(f"tool{n}")
        tool = make_tool(org, f"Rotating tool {n}", credential=value)
        grant_assign(agent=agent, tool=tool, actor=operator)
        expected[tool.id] = value
    for _ in range(45):
        secret_create(plaintext=new_credential())
    assert Secret.objects.filter(kek_id="testA").count() == 50
    assert AccessGrant.objects.filter(agent=agent).count() == 5
    settings.AGENTKEY_MASTER_KEYS = B_THEN_A

    vends: list[tuple[float, float, int, bool]] = []
    failures: list[BaseException] = []
    serving = threading.Event()
    stop = threading.Event()

    def vend_in_a_loop() -> None:
        client = AgentClient(issued.key.plaintext)
        tool_ids = list(expected)
        count = 0
        try:
            # Keep going until told to stop, then finish the cycle so every tool is vended after rotation.
            while not stop.is_set() or count % len(tool_ids):
                tool_id = tool_ids[count % len(tool_ids)]
                began = time.monotonic()
                response = client.credentials(tool_id)
                ok = response.status_code == 200 and response.json()["credential"] == expected[tool_id]
                vends.append((began, time.monotonic(), response.status_code, ok))
                count += 1
                serving.set()
        except BaseException as exc:  # noqa: BLE001  (re-raised in the main thread)
            failures.append(exc)
        finally:
            serving.set()
            connection.close()

    thread = threading.Thread(target=vend_in_a_loop, name="vend-loop")
    thread.start()
    try:
        assert serving.wait(timeout=30)
        started = time.monotonic()
        report = _rotate("--batch-size", "1")
        finished = time.monotonic()
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()

    assert failures == []
    assert report["rewrapped"] == 50
    assert report["remaining_under_old_keys"] == 0
    assert [status for _, _, status, _ in vends if status != 200] == []
    assert all(ok for _, _, _, ok in vends)
    overlapping = [v for v in vends if v[0] <= finished and v[1] >= started]
    assert overlapping, "no vend ran while the rotation did"
    assert len(vends) >= 10
    assert set(Secret.objects.values_list("kek_id", flat=True)) == {"testB"}
