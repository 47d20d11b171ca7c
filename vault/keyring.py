"""Master keys (KEKs) from configuration.

``AGENTKEY_MASTER_KEYS`` holds ``id:base64key`` entries separated by commas or
whitespace; the first entry is the active key that wraps new DEKs, the others
only unwrap. Nothing here ever prints key material: errors name the entry by
position and id.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from django.conf import settings

from agentkey.core.errors import CryptoError

KEY_BYTES = 32
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


class KeyringError(ValueError):
    """The master-key configuration is unusable."""


@dataclass(frozen=True)
class Keyring:
    active_id: str
    keys: Mapping[str, bytes] = field(repr=False)

    def __repr__(self) -> str:
        return f"Keyring(active_id={self.active_id!r}, key_ids={sorted(self.keys)!r})"

    @property
    def active_key(self) -> bytes:
        return self.keys[self.active_id]

    def key(self, kek_id: str) -> bytes:
        try:
            return self.keys[kek_id]
        except KeyError:
            raise CryptoError(
                f"master key {kek_id!r} is not loaded; add it back to AGENTKEY_MASTER_KEYS "
                "or run manage.py rotate_master_key while it is still configured"
            ) from None


def _decode_key(material: str, position: int, kek_id: str) -> bytes:
    padded = material + "=" * (-len(material) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError(f"master key #{position} ({kek_id!r}) is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise KeyringError(
            f"master key #{position} ({kek_id!r}) must decode to {KEY_BYTES} bytes, got {len(raw)}"
        )
    return raw


def parse_master_keys(value: str) -> Keyring:
    entries = [e for e in re.split(r"[\s,]+", value.strip()) if e]
    if not entries:
        raise KeyringError("AGENTKEY_MASTER_KEYS is empty; give at least one id:base64key entry")
    keys: dict[str, bytes] = {}
    for position, entry in enumerate(entries, start=1):
        kek_id, sep, material = entry.partition(":")
        if not sep or not material:
            raise KeyringError(f"master key #{position} must look like id:base64key")
        if not _KEY_ID.match(kek_id):
            raise KeyringError(f"master key #{position} has an invalid id; use 1-32 of A-Z a-z 0-9 _ . -")
        if kek_id in keys:
            raise KeyringError(f"master key id {kek_id!r} appears twice")
        keys[kek_id] = _decode_key(material, position, kek_id)
    return Keyring(active_id=next(iter(keys)), keys=keys)


@functools.lru_cache(maxsize=8)
def _cached(value: str) -> Keyring:
    return parse_master_keys(value)


def get_keyring() -> Keyring:
    """The configured keyring, parsed once per distinct configuration value."""
    value: str = settings.AGENTKEY_MASTER_KEYS or ""
    try:
        return _cached(value)
    except KeyringError as exc:
        raise CryptoError(f"master keys misconfigured: {exc}") from None
