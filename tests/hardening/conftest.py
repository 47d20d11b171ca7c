"""Plumbing for driving the WSGI application in-process inside a test transaction."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core import signals
from django.db import close_old_connections


@pytest.fixture
def in_process_wsgi(db: Any, settings: Any) -> Iterator[None]:
    """Call the WSGI application directly, on the test's connection and transaction.

    Django's WSGI handler closes "obsolete" connections at the start and end of
    every request; inside the test transaction that would close it, so the
    signals are detached exactly as Django's own test client does. Rate limits
    are not under test here (they have their own suite) and would cap the run.
    """
    settings.RATELIMIT_ENABLE = False
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
