"""Sealing short secrets that live outside the Secret table (e.g. TOTP keys) under the master keys.

Format: ``ak1:<kek id>:<base64url(version || nonce || ciphertext || tag)>``; the
associated data binds the value to its purpose, so a value sealed for one use
cannot be replayed into another.
"""

from __future__ import annotations

import base64

from agentkey.core.errors import CryptoError
from vault import crypto
from vault.keyring import Keyring, get_keyring

PREFIX = "ak1:"


def _aad(purpose: str, kek_id: str) -> bytes:
    return b"agentkey/sealed/v1|" + purpose.encode() + b"|" + kek_id.encode()


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def seal_text(text: str, *, purpose: str, keyring: Keyring | None = None) -> str:
    keyring = keyring or get_keyring()
    kek_id = keyring.active_id
    blob = crypto.seal(keyring.active_key, text.encode("utf-8"), _aad(purpose, kek_id))
    return f"{PREFIX}{kek_id}:{base64.urlsafe_b64encode(blob).decode()}"


def unseal_text(value: str, *, purpose: str, keyring: Keyring | None = None) -> str:
    if not is_sealed(value):
        raise CryptoError(f"a {purpose} value is not sealed")
    keyring = keyring or get_keyring()
    kek_id, _, encoded = value[len(PREFIX) :].partition(":")
    try:
        blob = base64.urlsafe_b64decode(encoded.encode())
    except ValueError:
        raise CryptoError(f"a sealed {purpose} value is malformed") from None
    return crypto.open_blob(
        keyring.key(kek_id), blob, _aad(purpose, kek_id), f"sealed {purpose} value"
    ).decode("utf-8")


def reseal_text(value: str, *, purpose: str, keyring: Keyring | None = None) -> str:
    """Seal again under the active key (or seal a legacy plaintext value for the first time)."""
    keyring = keyring or get_keyring()
    text = unseal_text(value, purpose=purpose, keyring=keyring) if is_sealed(value) else value
    return seal_text(text, purpose=purpose, keyring=keyring)


def sealed_key_id(value: str) -> str | None:
    return value[len(PREFIX) :].partition(":")[0] if is_sealed(value) else None
