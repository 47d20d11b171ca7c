"""Statements written once for the hot path (issue #7, docs/performance.md).

Django builds and compiles a queryset's SQL on every evaluation. For the three statements of a
credential vend that work cost several times the database round trips themselves, so those
statements are written out here, once, from the models' own metadata, and model instances are
built back from the rows the way Django's query iterator does it: the backend's and the field's
converters, then ``Model.from_db``. The same code runs on PostgreSQL and SQLite (the embedded
default), and a renamed column changes the SQL with it.

Only these three statements take this path; everything else stays with the ORM.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import psycopg
from django.db import NotSupportedError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models import Field, Model

M = TypeVar("M", bound=Model)
Converter = Callable[[Any, Any, BaseDatabaseWrapper], Any]


def quote(name: str) -> str:
    """PostgreSQL and SQLite quote identifiers the same way."""
    return '"' + name.replace('"', '""') + '"'


def table(model: type[Model]) -> str:
    return quote(model._meta.db_table)


def column(field: Any) -> str:
    """The quoted column of a concrete field."""
    if not isinstance(field, Field) or field.column is None:
        raise TypeError(f"{field!r} has no column of its own")
    return quote(field.column)


class Columns(Generic[M]):
    """Every concrete column of one model under an alias, and the instance built back from them.

    In a :func:`compose` template, ``{g:*}`` is every column, ``{g:table}`` the table with its
    alias, and ``{g:<field name>}`` that field's column (``{g:tool}`` is ``"g"."tool_id"``).
    """

    def __init__(self, model: type[M], alias: str) -> None:
        self.model = model
        self.alias = alias
        self.fields: list[Field[Any, Any]] = list(model._meta.concrete_fields)
        self.attnames = [f.attname for f in self.fields]
        self.pk_index = next(i for i, f in enumerate(self.fields) if f.primary_key)
        self.sql = ", ".join(f"{quote(alias)}.{column(f)}" for f in self.fields)
        self._converters: dict[str, list[tuple[int, list[Converter], Any]]] = {}

    def __len__(self) -> int:
        return len(self.fields)

    def __format__(self, spec: str) -> str:
        if spec == "*":
            return self.sql
        if spec == "table":
            return f"{table(self.model)} {quote(self.alias)}"
        return f"{quote(self.alias)}.{column(self.model._meta.get_field(spec))}"

    def _converters_for(self, connection: BaseDatabaseWrapper) -> list[tuple[int, list[Converter], Any]]:
        found = self._converters.get(connection.alias)
        if found is None:
            found = []
            for i, f in enumerate(self.fields):
                expression = f.get_col(self.alias)
                chain = connection.ops.get_db_converters(expression) + expression.get_db_converters(
                    connection
                )
                if chain:
                    found.append((i, chain, expression))
            self._converters[connection.alias] = found
        return found

    def build(self, values: Sequence[Any], connection: BaseDatabaseWrapper) -> M | None:
        """The instance, or None when the row has none (a LEFT JOIN that matched nothing)."""
        if values[self.pk_index] is None:
            return None
        converters = self._converters_for(connection)
        if converters:
            values = list(values)
            for i, chain, expression in converters:
                for convert in chain:
                    values[i] = convert(values[i], expression, connection)
        return self.model.from_db(connection.alias, self.attnames, values)


def compose(template: str, **parts: Columns[Any]) -> str:
    """A statement from a template whose only substitutions are identifiers from model metadata
    (see :class:`Columns`); values always go in as ``%s`` parameters."""
    return template.format(**parts)


def _cursor(connection: BaseDatabaseWrapper) -> Any:
    """A cursor for one of these statements, wrapped by Django as any cursor is (query logging,
    database error translation). On PostgreSQL with ``prepare_threshold`` set (AGENTKEY_DB_PREPARE,
    agentkey/settings/base.py) it binds server-side, so psycopg prepares each statement on its
    first use on a connection. The ORM's cursors bind client-side and never prepare (psycopg
    still counts their texts, and a rollback on the connection drops what was prepared)."""
    if (
        connection.vendor != "postgresql"
        or connection.settings_dict["OPTIONS"].get("prepare_threshold") is None
    ):
        return connection.cursor()
    # What connection.cursor() does before it makes a cursor: a connection that failed its
    # health check is replaced, not used for one more failing request.
    connection.close_if_health_check_failed()
    connection.validate_thread_sharing()
    connection.ensure_connection()
    raw = psycopg.Cursor(connection.connection)
    if connection.queries_logged:
        return _LoggedAsWritten(raw, connection)
    return connection.make_cursor(raw)  # type: ignore[arg-type]  # the stubs say CursorWrapper; it wraps a DB-API cursor


class _LoggedAsWritten(CursorDebugWrapper):
    """Django's query log (DEBUG, assertNumQueries) for a prepared statement. psycopg keeps no
    text of a prepared execution for Django to read back, so the log shows the statement as
    written, and without its parameters: a presented key's hash never reaches a log."""

    def execute(self, sql: Any, params: Any = None) -> Any:
        with self.debug_sql(sql, None):
            return CursorWrapper.execute(self, sql, params)


def _plan_outdated(exc: NotSupportedError) -> bool:
    """PostgreSQL refuses a prepared statement whose result columns changed type since it was
    prepared (a migration widened a column): "cached plan must not change result type"."""
    return getattr(exc.__cause__, "sqlstate", None) == "0A000"


def _run(connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any], *, returning: bool) -> Any:
    """Execute one statement and fetch its row (when ``returning``). A prepared plan made stale
    by a migration is dropped with its connection and the statement runs once more, prepared
    afresh, unless a transaction is open (then the caller's request fails closed, 503)."""
    try:
        return _execute(connection, sql, params, returning=returning)
    except NotSupportedError as exc:
        if not _plan_outdated(exc) or connection.in_atomic_block:
            raise
    connection.close()  # its prepared statements go with it
    return _execute(connection, sql, params, returning=returning)


def _execute(connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any], *, returning: bool) -> Any:
    with _cursor(connection) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() if returning else cursor.lastrowid


def fetch_one(
    sql: str, params: Sequence[Any], *parts: Columns[Any], using: str = "default"
) -> list[Any] | None:
    """Run one SELECT whose columns are ``parts`` in order; one instance (or None) per part."""
    connection = connections[using]
    row = _run(connection, sql, params, returning=True)
    if row is None:
        return None
    built: list[Any] = []
    start = 0
    for part in parts:
        built.append(part.build(row[start : start + len(part)], connection))
        start += len(part)
    return built


def prep(model: type[Model], field_name: str, value: Any, using: str = "default") -> Any:
    """A parameter as the backend stores that field (a UUID is text on SQLite, say)."""
    field = model._meta.get_field(field_name)
    return field.get_db_prep_value(value, connections[using], prepared=False)  # type: ignore[union-attr]


class Insert(Generic[M]):
    """``INSERT`` of every concrete column but an auto-increment key, returning that key."""

    def __init__(self, model: type[M]) -> None:
        self.model = model
        pk = model._meta.pk
        if pk is None:  # pragma: no cover - every concrete model has one
            raise TypeError(f"{model.__name__} has no primary key")
        self.pk = pk
        self.fields = [f for f in model._meta.concrete_fields if f is not pk or not f.db_returning]
        self.returning = pk.db_returning
        self._sql: dict[bool, str] = {}

    def sql(self, *, returning: bool) -> str:
        columns = ", ".join(column(f) for f in self.fields)
        placeholders = ", ".join(["%s"] * len(self.fields))
        tail = f" RETURNING {column(self.pk)}" if returning else ""
        return f"INSERT INTO {table(self.model)} ({columns}) VALUES ({placeholders}){tail}"  # noqa: S608  # nosec B608

    def save(self, obj: M, using: str = "default") -> M:
        """What ``Model.save()`` does for a new row of a model with no signals and no parents."""
        connection = connections[using]
        params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in self.fields]
        # RETURNING where the backend has it (PostgreSQL; SQLite from 3.35), else the row id.
        returning = self.returning and connection.features.can_return_columns_from_insert
        sql = self._sql.get(returning)
        if sql is None:
            sql = self._sql[returning] = self.sql(returning=returning)
        found = _run(connection, sql, params, returning=returning)
        if self.returning:
            setattr(obj, self.pk.attname, found[0] if returning else found)
        obj._state.adding = False
        obj._state.db = using
        return obj
