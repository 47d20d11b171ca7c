"""Running operator commands the way an operator does: in-process, and as real processes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Ran:
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> dict[str, str]:
        """The plain ``key: value`` output as a dict."""
        return dict(line.split(": ", 1) for line in self.out.splitlines() if line)


def cli(name: str, *args: str, stdin: str | None = None) -> Ran:
    """Run a command in-process. ``stdin`` is what an operator would pipe in (empty by default)."""
    out, err = io.StringIO(), io.StringIO()
    call_command(name, *args, stdin=io.StringIO(stdin or ""), stdout=out, stderr=err)
    return Ran(out.getvalue(), err.getvalue())


def cli_json(name: str, *args: str, stdin: str | None = None) -> dict[str, Any]:
    result = cli(name, *args, "--json", stdin=stdin).json()
    assert isinstance(result, dict)
    return result


def cli_error(name: str, *args: str, stdin: str | None = None) -> str:
    """The message of a command that must fail without --json."""
    with pytest.raises(CommandError) as failure:
        cli(name, *args, stdin=stdin)
    return str(failure.value)


def cli_json_error(name: str, *args: str, stdin: str | None = None) -> dict[str, Any]:
    """The JSON error a command must print to stderr with --json, exiting 1."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command(name, *args, "--json", stdin=io.StringIO(stdin or ""), stdout=out, stderr=err)
    assert exit_info.value.code == 1
    assert out.getvalue() == ""
    body = json.loads(err.getvalue())
    assert isinstance(body, dict)
    return body


@dataclass(frozen=True)
class Process:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@pytest.fixture
def manage() -> Any:
    """``python manage.py ...`` as a real process against this test's database.

    Only transactional tests see each other's writes across processes, so tests
    using this fixture are marked ``django_db(transaction=True)``.
    """
    from django.db import connection

    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "agentkey.settings.test",
        "DATABASE_URL": f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "PYTHONUNBUFFERED": "1",
    }

    def run(*args: str, stdin: str | None = None) -> Process:
        done = subprocess.run(
            [sys.executable, str(REPO / "manage.py"), *args],
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=120,
            check=False,
        )
        return Process(done.returncode, done.stdout, done.stderr)

    return run
