"""The audit log is append-only in the database itself (DESIGN §3): raw SQL, the ORM, PostgreSQL and SQLite."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from audit.models import Action, AuditEvent
from audit.services import SystemActor, audit_record
from tests.support.embedded import run_on_sqlite

REPO = Path(settings.BASE_DIR)


def _snapshot() -> list[Any]:
    return list(AuditEvent.objects.order_by("id").values())


@pytest.fixture
def events(db: Any) -> list[AuditEvent]:
    actor = SystemActor(label="tests")
    return [audit_record(action=Action.MASTER_KEY_ROTATED, actor=actor, metadata={"n": n}) for n in range(3)]


def _refused(sql: str, params: list[Any] | None = None) -> DatabaseError:
    """Run ``sql`` in a savepoint; it must be refused by the append-only trigger."""
    with (
        pytest.raises(DatabaseError, match="audit_auditevent is append-only") as caught,
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, params)
    return caught.value


# --- PostgreSQL, raw SQL -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditevent SET action = 'forged' WHERE id = %s",
        "UPDATE audit_auditevent SET actor_label = 'someone else'",
        "UPDATE audit_auditevent SET action = 'forged' WHERE id = -1",
        "DELETE FROM audit_auditevent WHERE id = %s",
        "DELETE FROM audit_auditevent",
        "DELETE FROM audit_auditevent WHERE id = -1",
        "DELETE FROM audit_auditevent WHERE false",
        "TRUNCATE audit_auditevent",
        "TRUNCATE TABLE audit_auditevent RESTART IDENTITY CASCADE",
    ],
    ids=[
        "update-one",
        "update-all",
        "update-matching-nothing",
        "delete-one",
        "delete-all",
        "delete-matching-nothing",
        "delete-where-false",
        "truncate",
        "truncate-cascade",
    ],
)
def test_postgres_refuses_every_change_to_past_events(events: list[AuditEvent], sql: str) -> None:
    before = _snapshot()
    params = [events[0].id] if "%s" in sql else None

    error = _refused(sql, params)

    cause = error.__cause__
    assert getattr(cause, "sqlstate", None) == "42501"  # insufficient_privilege, from the trigger
    verb = sql.split(maxsplit=1)[0].upper()
    assert f"{verb} refused" in str(error)
    assert _snapshot() == before


def test_postgres_still_accepts_inserts(events: list[AuditEvent]) -> None:
    before = AuditEvent.objects.count()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditevent (created_at, actor_type, actor_id, actor_label, action, target_type,"
            " target_id, target_label, metadata, request_id, signature)"
            " VALUES (now(), 'system', '', 'raw sql', 'test.raw_insert', '', '', '', '{}', '', '')"
            " RETURNING id"
        )
        row = cursor.fetchone()
    assert row is not None
    assert AuditEvent.objects.count() == before + 1
    assert AuditEvent.objects.get(id=row[0]).action == "test.raw_insert"


def test_the_triggers_are_installed_by_the_migration(db: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_auditevent'::regclass"
            " AND NOT tgisinternal AND tgenabled = 'O' ORDER BY tgname"
        )
        names = [row[0] for row in cursor.fetchall()]
    assert names == ["audit_auditevent_append_only", "audit_auditevent_no_truncate"]


# --- PostgreSQL, the ORM -----------------------------------------------------------------------------


def test_orm_queryset_update_is_refused(events: list[AuditEvent]) -> None:
    before = _snapshot()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(id=events[0].id).update(action="forged")
    assert _snapshot() == before


def test_orm_queryset_delete_is_refused(events: list[AuditEvent]) -> None:
    before = _snapshot()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(id__in=[e.id for e in events]).delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.all().delete()
    assert _snapshot() == before


def test_orm_instance_save_and_delete_are_refused(events: list[AuditEvent]) -> None:
    before = _snapshot()
    event = AuditEvent.objects.get(id=events[1].id)
    event.actor_label = "rewritten history"
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        event.save()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        event.delete()
    assert _snapshot() == before


# --- SQLite (the embedded default) -------------------------------------------------------------------

SQLITE_TRIGGERS = ["audit_auditevent_no_delete", "audit_auditevent_no_update"]


def _manage(database: Path, *args: str) -> None:
    run_on_sqlite(database, "manage.py", *args, "--noinput", "-v", "0")


@pytest.fixture(scope="module")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    database = tmp_path_factory.mktemp("sqlite") / "audit.sqlite3"
    _manage(database, "migrate")
    assert database.exists()
    return database


@pytest.fixture
def sqlite_db(migrated_sqlite: Path, tmp_path: Path) -> Path:
    """A private copy of the migrated database, with one event in it."""
    database = tmp_path / "audit.sqlite3"
    shutil.copyfile(migrated_sqlite, database)
    db = sqlite3.connect(database)
    try:
        with db:
            db.execute(
                "INSERT INTO audit_auditevent (created_at, actor_type, actor_id, actor_label, action,"
                " target_type, target_id, target_label, metadata, request_id, signature)"
                " VALUES ('2026-01-01 00:00:00', 'system', '', 'sqlite', 'test.sqlite', '', '', '', '{}', '', '')"
            )
    finally:
        db.close()
    return database


def _triggers(db: sqlite3.Connection) -> list[str]:
    rows = db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_auditevent' ORDER BY name"
    )
    return [name for (name,) in rows]


def test_sqlite_refuses_update_and_delete(sqlite_db: Path) -> None:
    db = sqlite3.connect(sqlite_db)
    try:
        assert _triggers(db) == SQLITE_TRIGGERS
        rows = db.execute("SELECT * FROM audit_auditevent").fetchall()
        assert len(rows) == 1

        attempts = [
            ("UPDATE", "UPDATE audit_auditevent SET action = 'forged'"),
            ("UPDATE", "UPDATE audit_auditevent SET action = 'forged' WHERE id = 1"),
            ("DELETE", "DELETE FROM audit_auditevent"),  # SQLite's truncate optimisation
            ("DELETE", "DELETE FROM audit_auditevent WHERE id = 1"),
        ]
        for verb, sql in attempts:
            with pytest.raises(sqlite3.DatabaseError) as caught, db:
                db.execute(sql)
            assert isinstance(caught.value, sqlite3.IntegrityError)
            assert f"audit_auditevent is append-only: {verb} refused" in str(caught.value)

        assert db.execute("SELECT * FROM audit_auditevent").fetchall() == rows
        with db:
            db.execute(
                "INSERT INTO audit_auditevent (created_at, actor_type, actor_id, actor_label, action,"
                " target_type, target_id, target_label, metadata, request_id, signature)"
                " VALUES ('2026-01-02 00:00:00', 'system', '', 'sqlite', 'test.second', '', '', '', '{}', '', '')"
            )
        assert db.execute("SELECT count(*) FROM audit_auditevent").fetchone() == (2,)
    finally:
        db.close()


def test_sqlite_triggers_migrate_down_and_up_again(sqlite_db: Path) -> None:
    _manage(sqlite_db, "migrate", "audit", "0001")
    db = sqlite3.connect(sqlite_db)
    try:
        assert _triggers(db) == []
    finally:
        db.close()

    _manage(sqlite_db, "migrate", "audit")
    db = sqlite3.connect(sqlite_db)
    try:
        assert _triggers(db) == SQLITE_TRIGGERS
        with pytest.raises(sqlite3.IntegrityError, match="append-only: UPDATE refused"), db:
            db.execute("UPDATE audit_auditevent SET action = 'forged'")
    finally:
        db.close()
