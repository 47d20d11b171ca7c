"""Standard Webhooks signatures (https://www.standardwebhooks.com) for generic endpoints.

The secret is ``whsec_`` + base64 of 32 random bytes. Each request carries
``webhook-id`` (the delivery's message id, the same on every retry, so a
receiver can drop duplicates), ``webhook-timestamp`` (unix seconds of this
attempt) and ``webhook-signature``: ``v1,`` + base64 HMAC-SHA256 over
``{id}.{timestamp}.{body}`` keyed with the decoded secret bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
SECRET_BYTES = 32
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64


class BadSigningSecret(ValueError):
    """Not a ``whsec_`` secret of 24 to 64 bytes. Never carries the value."""


def new_signing_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_bytes(secret: str) -> bytes:
    if not secret.startswith(PREFIX):
        raise BadSigningSecret("A signing secret starts with whsec_.")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise BadSigningSecret("A signing secret is base64 after whsec_.") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise BadSigningSecret("A signing secret holds 24 to 64 bytes.")
    return key


def signature(*, secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(*, secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret=secret, message_id=message_id, timestamp=timestamp, body=body),
    }
