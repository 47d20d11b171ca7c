"""Agent key material: generation and hashing."""

from __future__ import annotations

import base64
import hashlib
import secrets

KEY_PREFIX = "sk_agent_"
KEY_RANDOM_BYTES = 24
PREFIX_SHOWN = len(KEY_PREFIX) + 4


def generate() -> str:
    raw = secrets.token_bytes(KEY_RANDOM_BYTES)
    return KEY_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()
