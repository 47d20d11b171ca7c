"""System checks: a broken master-key configuration is reported at start-up."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from vault.keyring import KeyringError, parse_master_keys


@register()
def master_keys_check(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    value = settings.AGENTKEY_MASTER_KEYS or ""
    try:
        parse_master_keys(value)
    except KeyringError as exc:
        return [
            Error(str(exc), hint="Set AGENTKEY_MASTER_KEYS or AGENTKEY_MASTER_KEYS_FILE.", id="vault.E001")
        ]
    generated = getattr(settings, "AGENTKEY_MASTER_KEYS_GENERATED", None)
    if generated:
        return [
            Warning(
                f"Using a master key generated into {generated}.",
                hint="Fine for trying AgentKey out. In production set AGENTKEY_MASTER_KEYS (or _FILE) "
                "from your secret manager and keep a backup: without it no credential can be decrypted.",
                id="vault.W001",
            )
        ]
    return []
