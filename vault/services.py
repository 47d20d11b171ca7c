"""Every write to secrets, and the only place plaintext is produced."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from agentkey.core.errors import CryptoError, FieldError, Message, ValidationFailed
from vault import crypto
from vault.keyring import get_keyring
from vault.models import Secret

MAX_SECRET_BYTES = 64 * 1024

SECRET_EMPTY = Message(
    "The credential is empty.",
    "Provide the credential value (API key, token or JSON) and try again.",
)
SECRET_TOO_LARGE = Message(
    "The credential is larger than 64 KiB.",
    "Store a smaller credential; large files do not belong in a credential broker.",
)


def _encode(plaintext: str) -> bytes:
    raw = plaintext.encode("utf-8")
    if not plaintext.strip():  # str.strip knows Unicode whitespace; bytes.strip only ASCII
        raise ValidationFailed(SECRET_EMPTY, details=[FieldError("credential", SECRET_EMPTY.error)])
    if len(raw) > MAX_SECRET_BYTES:
        raise ValidationFailed(SECRET_TOO_LARGE, details=[FieldError("credential", SECRET_TOO_LARGE.error)])
    return raw


def secret_create(*, plaintext: str) -> Secret:
    secret = Secret()
    envelope = crypto.encrypt(secret.id, _encode(plaintext), get_keyring())
    secret.kek_id, secret.wrapped_dek, secret.ciphertext = (
        envelope.kek_id,
        envelope.wrapped_dek,
        envelope.ciphertext,
    )
    secret.save(force_insert=True)
    return secret


def secret_replace(*, secret: Secret, plaintext: str) -> Secret:
    """Store a new value under the same id, with a fresh DEK."""
    envelope = crypto.encrypt(secret.id, _encode(plaintext), get_keyring())
    secret.kek_id, secret.wrapped_dek, secret.ciphertext = (
        envelope.kek_id,
        envelope.wrapped_dek,
        envelope.ciphertext,
    )
    secret.save(update_fields=["kek_id", "wrapped_dek", "ciphertext", "updated_at"])
    return secret


def secret_delete(*, secret: Secret) -> None:
    secret.delete()


def secret_reveal(*, secret: Secret) -> str:
    """Decrypt. Raises CryptoError on tampering or a missing master key."""
    envelope = crypto.Envelope(secret.kek_id, bytes(secret.wrapped_dek), bytes(secret.ciphertext))
    return crypto.decrypt(secret.id, envelope, get_keyring()).decode("utf-8")


class RewrapIncomplete(CryptoError):
    """A rotation stopped part-way; the batches before the failure are committed."""

    def __init__(self, message: str, *, rewrapped: int) -> None:
        super().__init__(message)
        self.rewrapped = rewrapped


@dataclass(frozen=True)
class RewrapReport:
    active_key: str
    rewrapped: int
    remaining: int
    keys_in_use: list[str]


def secrets_rewrap(*, batch_size: int = 500) -> RewrapReport:
    """Re-wrap every DEK under the active master key.

    Runs in short batches, each its own transaction holding row locks only on
    its batch, so the application keeps serving: readers unwrap with whichever
    key the row names, and both keys are configured during a rotation. Only
    the wrapped DEK changes; ciphertexts are untouched.
    """
    keyring = get_keyring()
    rewrapped = 0
    last_id = None
    while True:
        with transaction.atomic():
            batch = Secret.objects.select_for_update().exclude(kek_id=keyring.active_id).order_by("id")
            if last_id is not None:
                batch = batch.filter(id__gt=last_id)
            rows = list(batch[:batch_size])
            if not rows:
                break
            try:
                for row in rows:
                    row.kek_id, row.wrapped_dek = crypto.rewrap(
                        row.id, row.kek_id, bytes(row.wrapped_dek), keyring
                    )
            except CryptoError as exc:
                raise RewrapIncomplete(str(exc), rewrapped=rewrapped) from None
            Secret.objects.bulk_update(rows, ["kek_id", "wrapped_dek"])
            rewrapped += len(rows)
            last_id = rows[-1].id
    remaining = Secret.objects.exclude(kek_id=keyring.active_id).count()
    in_use = sorted(Secret.objects.values_list("kek_id", flat=True).distinct())
    return RewrapReport(keyring.active_id, rewrapped, remaining, in_use)
