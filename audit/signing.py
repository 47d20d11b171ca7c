"""Signatures of audit events and checkpoints (docs/audit-verification.md).

An event's signature is ``kid:base64(HMAC-SHA256(key, EVENT_DOMAIN + canonical))`` where
``canonical`` is the compact, key-sorted, ASCII JSON of every column except ``id`` and
``signature``. The id is assigned by the database during the INSERT, so signing it would
cost the vend path a second round trip (fetch the id first); checkpoints bind ids instead:
each one lists, per covered id, a tag of the signature stored there and a digest over the
``id:signature`` pairs, so moving, deleting or inserting rows inside a sealed range shows.

``AGENTKEY_AUDIT_KEY`` holds ``id:base64key`` entries (commas or whitespace between them);
the first signs, the others still verify, so the key can rotate.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

# The canonical form lives in the standalone verifier (stdlib only, copied into
# bin/verify-audit-export), so signer and verifier cannot drift apart.
from audit import verifier
from audit.verifier import (
    CHECKPOINT_DOMAIN,
    CHECKPOINT_FIELDS,
    EVENT_DOMAIN,
    EVENT_FIELDS,
    TAG_CHARS,
    _encode,
)

KEY_MIN_BYTES = 32
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")


class AuditKeyError(Exception):
    """AGENTKEY_AUDIT_KEY is missing or malformed."""


@dataclass(frozen=True)
class AuditKeys:
    active_id: str
    keys: dict[str, bytes]


def parse_audit_keys(value: str) -> AuditKeys:
    entries = [e for e in re.split(r"[\s,]+", value.strip()) if e]
    if not entries:
        raise AuditKeyError("AGENTKEY_AUDIT_KEY is empty; give at least one id:base64key entry")
    keys: dict[str, bytes] = {}
    for position, entry in enumerate(entries, start=1):
        kid, sep, material = entry.partition(":")
        if not sep or not material:
            raise AuditKeyError(f"audit key #{position} must look like id:base64key")
        if not _KEY_ID.fullmatch(kid):
            raise AuditKeyError(f"audit key #{position} has an invalid id; use 1-32 of A-Z a-z 0-9 _ . -")
        if kid in keys:
            raise AuditKeyError(f"audit key id {kid!r} appears twice")
        try:
            raw = base64.b64decode(material + "=" * (-len(material) % 4), altchars=b"-_", validate=False)
        except (binascii.Error, ValueError):
            raise AuditKeyError(f"audit key #{position} ({kid!r}) is not valid base64") from None
        if len(raw) < KEY_MIN_BYTES:
            raise AuditKeyError(
                f"audit key #{position} ({kid!r}) must decode to at least {KEY_MIN_BYTES} bytes"
            )
        keys[kid] = raw
    return AuditKeys(active_id=next(iter(keys)), keys=keys)


@functools.lru_cache(maxsize=8)
def _cached(value: str) -> AuditKeys:
    return parse_audit_keys(value)


def get_audit_keys() -> AuditKeys:
    return _cached(str(getattr(settings, "AGENTKEY_AUDIT_KEY", "") or ""))


# --- canonical forms --------------------------------------------------------------------------------


def canonical_time(value: datetime) -> str:
    """Always microseconds and a Z: isoformat() drops ".000000", PostgreSQL's to_char does not."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_ip(value: str | None) -> str | None:
    if not value:
        return None
    # IPv4 renders alike everywhere; IPv6 is re-rendered by Python on both sides.
    return str(ipaddress.ip_address(value)) if ":" in value else value


def _normalize(value: Any) -> Any:
    if isinstance(value, float):
        # PostgreSQL's jsonb prints 1e+16 as 10000000000000000 (read back as an int) and
        # has no negative zero: store what it will give back, so both sides agree.
        if value == 0.0:
            return 0.0
        return int(value) if abs(value) >= 1e16 else value
    if isinstance(value, dict):
        return {key: _normalize(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalize(item) for item in value]
    return value


def canonical_metadata(value: Any) -> Any:
    """What the JSON column gives back: stored as JSON, read back as JSON (stored as returned)."""
    return _normalize(json.loads(json.dumps(value if value is not None else {}, allow_nan=False)))


def event_canonical(fields: Mapping[str, Any]) -> bytes:
    """``fields`` holds EVENT_FIELDS already in canonical value form (strings, None, metadata)."""
    return _encode({name: fields[name] for name in EVENT_FIELDS}).encode("ascii")


def event_mac(key: bytes, canonical: bytes) -> bytes:
    return hmac.digest(key, EVENT_DOMAIN + canonical, "sha256")


def sign_event(fields: Mapping[str, Any]) -> str:
    keys = get_audit_keys()
    mac = event_mac(keys.keys[keys.active_id], event_canonical(fields))
    return f"{keys.active_id}:{base64.b64encode(mac).decode('ascii')}"


def signature_tag(signature: str) -> str:
    """The part of an event's signature a checkpoint records per id (never empty)."""
    _kid, _sep, mac = signature.partition(":")
    return (mac[:TAG_CHARS] or "-").ljust(TAG_CHARS, "-")


def digest_line(event_id: int, signature: str) -> bytes:
    return f"{event_id}:{signature}\n".encode()


# --- checkpoints ------------------------------------------------------------------------------------


def checkpoint_canonical(fields: Mapping[str, Any]) -> bytes:
    return _encode({name: fields[name] for name in CHECKPOINT_FIELDS}).encode("ascii")


def sign_checkpoint(fields: Mapping[str, Any]) -> str:
    keys = get_audit_keys()
    mac = hmac.digest(keys.keys[keys.active_id], CHECKPOINT_DOMAIN + checkpoint_canonical(fields), "sha256")
    return f"{keys.active_id}:{base64.b64encode(mac).decode('ascii')}"


def checkpoint_signature_valid(fields: Mapping[str, Any], signature: str, keys: AuditKeys) -> bool | None:
    """True/False, or None when the key id is not loaded."""
    kid, _sep, mac = signature.partition(":")
    key = keys.keys.get(kid)
    if key is None:
        return None
    expected = hmac.digest(key, CHECKPOINT_DOMAIN + checkpoint_canonical(fields), "sha256")
    return hmac.compare_digest(base64.b64encode(expected).decode("ascii"), mac)


def checkpoint_hash(fields: Mapping[str, Any], signature: str) -> str:
    """What the next checkpoint's prev_hash and the external anchor hold."""
    return verifier.checkpoint_hash({**fields, "signature": signature})
