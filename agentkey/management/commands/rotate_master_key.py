from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from accounts.mfa import mfa_secrets_reseal
from agentkey.core.cli import OperatorCommand, OperatorError, operator_label
from audit.models import Action
from audit.services import SystemActor, audit_record
from vault.keyring import get_keyring
from vault.services import RewrapIncomplete, secrets_rewrap


class Command(OperatorCommand):
    help = (
        "Re-wrap every data key under the active (first) master key in AGENTKEY_MASTER_KEYS. "
        "Safe while the app serves. Afterwards, keys listed as retirable can be removed."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500)

    def run(self, **options: Any) -> dict[str, Any]:
        if not 1 <= options["batch_size"] <= 10000:
            raise OperatorError(
                "--batch-size must be between 1 and 10000.", "The default of 500 suits most sites."
            )
        actor = SystemActor(label=operator_label())
        try:
            report = secrets_rewrap(batch_size=options["batch_size"])
        except RewrapIncomplete as exc:
            # The batches before the failure are committed: the log must say so.
            audit_record(
                action=Action.MASTER_KEY_ROTATED,
                actor=actor,
                metadata={
                    "active_key": get_keyring().active_id,
                    "rewrapped": exc.rewrapped,
                    "complete": False,
                },
            )
            raise
        mfa_resealed, mfa_keys = mfa_secrets_reseal()
        audit_record(
            action=Action.MASTER_KEY_ROTATED,
            actor=actor,
            metadata={
                "active_key": report.active_key,
                "rewrapped": report.rewrapped,
                "remaining": report.remaining,
                "mfa_resealed": mfa_resealed,
                "complete": True,
            },
        )
        configured = set(get_keyring().keys)
        return {
            "active_key": report.active_key,
            "rewrapped": report.rewrapped,
            "remaining_under_old_keys": report.remaining,
            "mfa_secrets_resealed": mfa_resealed,
            "keys_in_use": sorted(set(report.keys_in_use) | mfa_keys),
            "retirable_keys": sorted(configured - set(report.keys_in_use) - mfa_keys - {report.active_key}),
        }
