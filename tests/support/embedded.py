"""Run Python on the embedded default (SQLite, `make run`'s settings) in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings


def run_on_sqlite(database: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python <args>`` from the repository on ``database``, with its own var/ so the
    repository's is untouched; fails the test with stderr unless it exits 0."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(database.parent),
        "DJANGO_SETTINGS_MODULE": "agentkey.settings.base",
        "DATABASE_URL": f"sqlite:///{database}",
        "AGENTKEY_VAR_DIR": str(database.parent / "var"),
    }
    result = subprocess.run(
        [sys.executable, *args],
        cwd=Path(settings.BASE_DIR),
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result
