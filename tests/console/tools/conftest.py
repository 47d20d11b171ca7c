"""Fixtures for the tools pages."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.console.tools.support import console_for


@pytest.fixture
def admin_console(admin_member: Any) -> Client:
    return console_for(admin_member)
