"""System checks: a broken audit key configuration is reported at start-up."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from audit.signing import AuditKeyError, parse_audit_keys


@register()
def audit_key_check(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    try:
        parse_audit_keys(settings.AGENTKEY_AUDIT_KEY or "")
    except AuditKeyError as exc:
        return [Error(str(exc), hint="Set AGENTKEY_AUDIT_KEY or AGENTKEY_AUDIT_KEY_FILE.", id="audit.E001")]
    generated = getattr(settings, "AGENTKEY_AUDIT_KEY_GENERATED", None)
    if generated:
        return [
            Warning(
                f"Using an audit signing key generated into {generated}.",
                hint="Fine for trying AgentKey out. In production set AGENTKEY_AUDIT_KEY (or _FILE) from "
                "your secret manager, outside the database: whoever holds it can forge audit events.",
                id="audit.W001",
            )
        ]
    return []
