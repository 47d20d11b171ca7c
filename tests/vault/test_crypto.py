"""AES-256-GCM envelope encryption, below the database (DESIGN §3)."""

from __future__ import annotations

import base64
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from agentkey.core.errors import CryptoError
from vault import crypto
from vault.keyring import Keyring, parse_master_keys

KEYRING = parse_master_keys(settings.TEST_MASTER_KEY_A)
KEYRING_BA = parse_master_keys(f"{settings.TEST_MASTER_KEY_B},{settings.TEST_MASTER_KEY_A}")
KEY_MATERIAL = [entry.split(":", 1)[1] for entry in (settings.TEST_MASTER_KEY_A, settings.TEST_MASTER_KEY_B)]

VERSION, NONCE, TAG, DEK = 1, 12, 16, 32

plaintexts = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=2000).filter(
    lambda s: bool(s.strip())
)


def _assert_clean(exc: BaseException, *plaintext: bytes) -> None:
    """A crypto error names the secret, never a value or a key (short values may occur by chance)."""
    message = str(exc)
    for value in plaintext:
        if len(value) >= 8:
            assert value.decode("utf-8", "replace") not in message
    for material in KEY_MATERIAL:
        assert material not in message


@hypothesis_settings(max_examples=200, deadline=None, database=None)
@given(text=plaintexts)
def test_any_unicode_plaintext_round_trips(text: str) -> None:
    secret_id = uuid.uuid4()
    raw = text.encode("utf-8")
    envelope = crypto.encrypt(secret_id, raw, KEYRING)
    assert crypto.decrypt(secret_id, envelope, KEYRING).decode("utf-8") == text
    assert crypto.decrypt(secret_id, envelope, KEYRING_BA) == raw
    assert len(envelope.ciphertext) == VERSION + NONCE + len(raw) + TAG
    if len(raw) >= 8:
        assert raw not in envelope.ciphertext


@hypothesis_settings(max_examples=100, deadline=None, database=None)
@given(text=plaintexts, data=st.data())
def test_any_single_bit_flip_is_refused(text: str, data: st.DataObject) -> None:
    secret_id = uuid.uuid4()
    raw = text.encode("utf-8")
    envelope = crypto.encrypt(secret_id, raw, KEYRING)
    position = data.draw(st.integers(0, len(envelope.ciphertext) - 1), label="position")
    bit = data.draw(st.integers(0, 7), label="bit")
    tampered = bytearray(envelope.ciphertext)
    tampered[position] ^= 1 << bit
    with pytest.raises(CryptoError) as caught:
        crypto.decrypt(
            secret_id, crypto.Envelope(envelope.kek_id, envelope.wrapped_dek, bytes(tampered)), KEYRING
        )
    _assert_clean(caught.value, raw)


def test_layout_is_version_nonce_body_tag_and_readable_with_plain_aes_gcm() -> None:
    secret_id = uuid.uuid4()
    raw = b"lin_api_layout-check"
    envelope = crypto.encrypt(secret_id, raw, KEYRING)

    assert envelope.kek_id == "testA"
    assert envelope.ciphertext[:1] == b"\x01"
    assert len(envelope.ciphertext) == VERSION + NONCE + len(raw) + TAG
    assert envelope.wrapped_dek[:1] == b"\x01"
    assert len(envelope.wrapped_dek) == VERSION + NONCE + DEK + TAG

    # The documented layout, decoded by hand: a format change would strand every stored secret.
    kek = base64.b64decode(settings.TEST_MASTER_KEY_A.split(":", 1)[1])
    dek_aad = b"agentkey/dek/v1|" + secret_id.bytes + b"|testA"
    wrapped = envelope.wrapped_dek
    dek = AESGCM(kek).decrypt(wrapped[1:13], wrapped[13:], dek_aad)
    assert len(dek) == DEK
    blob = envelope.ciphertext
    data_aad = b"agentkey/secret/v1|" + secret_id.bytes
    assert AESGCM(dek).decrypt(blob[1:13], blob[13:], data_aad) == raw


def test_every_encryption_gets_a_fresh_nonce_and_data_key() -> None:
    secret_id = uuid.uuid4()
    raw = b"same plaintext every time"
    envelopes = [crypto.encrypt(secret_id, raw, KEYRING) for _ in range(200)]

    first, second = envelopes[:2]
    assert first.ciphertext != second.ciphertext
    assert first.wrapped_dek != second.wrapped_dek
    assert len({e.ciphertext[1:13] for e in envelopes}) == 200
    assert len({e.wrapped_dek[1:13] for e in envelopes}) == 200
    deks = {crypto.unwrap_dek(secret_id, e.kek_id, e.wrapped_dek, KEYRING) for e in envelopes[:20]}
    assert len(deks) == 20
    assert all(crypto.decrypt(secret_id, e, KEYRING) == raw for e in envelopes)


def test_ciphertext_is_bound_to_its_secret_id() -> None:
    raw = b"bound-to-one-secret"
    envelope = crypto.encrypt(uuid.uuid4(), raw, KEYRING)
    with pytest.raises(CryptoError, match="failed authentication") as caught:
        crypto.decrypt(uuid.uuid4(), envelope, KEYRING)
    _assert_clean(caught.value, raw)


def test_new_data_keys_are_wrapped_by_the_first_key_and_old_ones_still_open() -> None:
    secret_id = uuid.uuid4()
    raw = b"wrapped under the old key"
    old = crypto.encrypt(secret_id, raw, KEYRING)
    assert crypto.decrypt(secret_id, old, KEYRING_BA) == raw
    assert crypto.encrypt(secret_id, raw, KEYRING_BA).kek_id == "testB"


def test_rewrap_changes_only_the_wrapped_key() -> None:
    secret_id = uuid.uuid4()
    raw = b"rewrap keeps the data"
    old = crypto.encrypt(secret_id, raw, KEYRING)
    kek_id, wrapped = crypto.rewrap(secret_id, old.kek_id, old.wrapped_dek, KEYRING_BA)
    assert kek_id == "testB"
    assert wrapped != old.wrapped_dek
    moved = crypto.Envelope(kek_id, wrapped, old.ciphertext)
    assert crypto.decrypt(secret_id, moved, parse_master_keys(settings.TEST_MASTER_KEY_B)) == raw
    assert crypto.unwrap_dek(secret_id, kek_id, wrapped, KEYRING_BA) == crypto.unwrap_dek(
        secret_id, old.kek_id, old.wrapped_dek, KEYRING
    )


@pytest.mark.parametrize("length", [0, 1, 13, VERSION + NONCE + TAG - 1])
def test_too_short_blobs_are_refused_before_decryption(length: int) -> None:
    secret_id = uuid.uuid4()
    envelope = crypto.encrypt(secret_id, b"a-credential-value", KEYRING)
    short = crypto.Envelope(envelope.kek_id, envelope.wrapped_dek, envelope.ciphertext[:length])
    with pytest.raises(CryptoError, match="truncated"):
        crypto.decrypt(secret_id, short, KEYRING)


def test_unknown_format_version_is_refused() -> None:
    secret_id = uuid.uuid4()
    envelope = crypto.encrypt(secret_id, b"a-credential-value", KEYRING)
    future = crypto.Envelope(envelope.kek_id, envelope.wrapped_dek, b"\x02" + envelope.ciphertext[1:])
    with pytest.raises(CryptoError, match="unknown format version"):
        crypto.decrypt(secret_id, future, KEYRING)


def test_a_data_key_wrapped_by_a_foreign_master_key_is_refused() -> None:
    secret_id = uuid.uuid4()
    envelope = crypto.encrypt(secret_id, b"a-credential-value", KEYRING)
    impostor = Keyring(active_id="testA", keys={"testA": bytes(32)})
    with pytest.raises(CryptoError, match="failed authentication"):
        crypto.decrypt(secret_id, envelope, impostor)
