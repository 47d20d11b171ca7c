"""AES-256-GCM envelope encryption.

Each secret has its own 256-bit data key (DEK). The data is encrypted with
the DEK; the DEK is wrapped by a master key (KEK). Associated data binds the
ciphertext to the secret's id and the wrapped DEK to the id and the KEK id,
so a row copied onto another secret, or a DEK moved between secrets, fails
authentication instead of decrypting to someone else's credential.

Layout: ``ciphertext = version(1) || nonce(12) || AES-GCM(dek, data) (ct || tag16)``;
``wrapped_dek = version(1) || nonce(12) || AES-GCM(kek, dek)``.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agentkey.core.errors import CryptoError
from vault.keyring import Keyring

VERSION = b"\x01"
NONCE_BYTES = 12
_OVERHEAD = len(VERSION) + NONCE_BYTES + 16


def _data_aad(secret_id: uuid.UUID) -> bytes:
    return b"agentkey/secret/v1|" + secret_id.bytes


def _dek_aad(secret_id: uuid.UUID, kek_id: str) -> bytes:
    return b"agentkey/dek/v1|" + secret_id.bytes + b"|" + kek_id.encode()


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return VERSION + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_blob(key: bytes, blob: bytes, aad: bytes, what: str) -> bytes:
    if len(blob) < _OVERHEAD or blob[:1] != VERSION:
        raise CryptoError(f"{what} is truncated or has an unknown format version")
    nonce, body = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, body, aad)
    except InvalidTag:
        raise CryptoError(
            f"{what} failed authentication: the row was modified, moved to another secret, "
            "or wrapped by a different master key"
        ) from None


@dataclass(frozen=True)
class Envelope:
    kek_id: str
    wrapped_dek: bytes
    ciphertext: bytes


def encrypt(secret_id: uuid.UUID, plaintext: bytes, keyring: Keyring) -> Envelope:
    dek = AESGCM.generate_key(bit_length=256)
    kek_id = keyring.active_id
    return Envelope(
        kek_id=kek_id,
        wrapped_dek=seal(keyring.active_key, dek, _dek_aad(secret_id, kek_id)),
        ciphertext=seal(dek, plaintext, _data_aad(secret_id)),
    )


def unwrap_dek(secret_id: uuid.UUID, kek_id: str, wrapped_dek: bytes, keyring: Keyring) -> bytes:
    return open_blob(
        keyring.key(kek_id), wrapped_dek, _dek_aad(secret_id, kek_id), f"data key of secret {secret_id}"
    )


def decrypt(secret_id: uuid.UUID, envelope: Envelope, keyring: Keyring) -> bytes:
    dek = unwrap_dek(secret_id, envelope.kek_id, envelope.wrapped_dek, keyring)
    return open_blob(dek, envelope.ciphertext, _data_aad(secret_id), f"secret {secret_id}")


def rewrap(secret_id: uuid.UUID, kek_id: str, wrapped_dek: bytes, keyring: Keyring) -> tuple[str, bytes]:
    """Wrap the secret's DEK under the active master key; the data is untouched."""
    dek = unwrap_dek(secret_id, kek_id, wrapped_dek, keyring)
    active = keyring.active_id
    return active, seal(keyring.active_key, dek, _dek_aad(secret_id, active))
