"""Absolute links into the console, for messages that leave the server (notifications, emails)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse


def console_link(name: str, *, anchor: str = "", **kwargs: Any) -> str:
    """``AGENTKEY_PUBLIC_URL`` + the console page ``name`` (+ ``#anchor``)."""
    path = reverse(f"console:{name}", kwargs=kwargs or None)
    return f"{settings.AGENTKEY_PUBLIC_URL}{path}" + (f"#{anchor}" if anchor else "")
