"""OpenAPI document hooks (drf-spectacular)."""

from __future__ import annotations

from typing import Any


def drop_slash_aliases(
    endpoints: list[tuple[str, str, str, Any]], **kwargs: Any
) -> list[tuple[str, str, str, Any]]:
    """Keep only the canonical agent routes; ``/api/tools/`` is an alias of ``/api/tools``."""
    return [e for e in endpoints if not e[0].endswith("/")]
