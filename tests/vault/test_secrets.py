"""The Secret row and its services: round trips, tamper evidence, a missing master key (DESIGN §3)."""

from __future__ import annotations

import base64

import pytest
from django.conf import settings as django_settings
from django.db import connection

from agentkey.core.errors import CryptoError, ValidationFailed
from grants.services import grant_assign
from tests.factories import new_credential
from vault.models import Secret
from vault.services import (
    MAX_SECRET_BYTES,
    secret_create,
    secret_delete,
    secret_replace,
    secret_reveal,
)

pytestmark = pytest.mark.django_db

VERSION, NONCE, TAG, DEK = 1, 12, 16, 32
KEY_MATERIAL = [
    entry.split(":", 1)[1] for entry in (django_settings.TEST_MASTER_KEY_A, django_settings.TEST_MASTER_KEY_B)
]
BOTH_KEYS = f"{django_settings.TEST_MASTER_KEY_B},{django_settings.TEST_MASTER_KEY_A}"
PLAINTEXT_LENGTH = 40


def _reload(secret: Secret) -> Secret:
    return Secret.objects.get(pk=secret.pk)


def _refused(secret: Secret, *plaintexts: str) -> CryptoError:
    """Revealing the stored row raises CryptoError whose message holds no value and no key."""
    with pytest.raises(CryptoError) as caught:
        secret_reveal(secret=_reload(secret))
    message = str(caught.value)
    assert str(secret.id) in message or "master key" in message
    for plaintext in plaintexts:
        assert plaintext not in message
    for material in KEY_MATERIAL:
        assert material not in message
        assert base64.b64decode(material).hex() not in message
    return caught.value


def _flip(blob: bytes, position: int) -> bytes:
    out = bytearray(blob)
    out[position] ^= 0x80
    return bytes(out)


@pytest.fixture
def plaintext() -> str:
    value = new_credential("sk_live")
    assert len(value) == PLAINTEXT_LENGTH
    return value


@pytest.fixture
def secret(plaintext: str) -> Secret:
    return secret_create(plaintext=plaintext)


# --- round trips -----------------------------------------------------------------------------------


def test_created_secret_is_stored_encrypted_and_reveals_its_value(secret: Secret, plaintext: str) -> None:
    stored = _reload(secret)
    assert stored.kek_id == "testA"
    assert secret_reveal(secret=stored) == plaintext
    ciphertext, wrapped = bytes(stored.ciphertext), bytes(stored.wrapped_dek)
    assert len(ciphertext) == VERSION + NONCE + len(plaintext.encode()) + TAG
    assert len(wrapped) == VERSION + NONCE + DEK + TAG
    with connection.cursor() as cursor:
        cursor.execute("SELECT kek_id, wrapped_dek, ciphertext FROM vault_secret WHERE id = %s", [secret.id])
        row = cursor.fetchone()
    assert row is not None
    assert plaintext.encode() not in b"".join([row[0].encode(), bytes(row[1]), bytes(row[2])])


def test_unicode_and_json_credentials_round_trip() -> None:
    values = ['{"client_id": "abc", "secret": "ünïcødé-🔑"}', "ключ-доступа-1234567890", " padded value  \n"]
    created = [secret_create(plaintext=v) for v in values]
    assert [secret_reveal(secret=_reload(s)) for s in created] == values


def test_replace_gets_a_fresh_data_key_under_the_same_id(secret: Secret, plaintext: str) -> None:
    before = _reload(secret)
    old_wrapped, old_ciphertext = bytes(before.wrapped_dek), bytes(before.ciphertext)
    new_value = new_credential("sk_live")

    replaced = secret_replace(secret=before, plaintext=new_value)

    after = _reload(secret)
    assert replaced.id == after.id == secret.id
    assert bytes(after.wrapped_dek) != old_wrapped
    assert bytes(after.ciphertext) != old_ciphertext
    assert secret_reveal(secret=after) == new_value
    assert Secret.objects.filter(pk=secret.pk).count() == 1
    assert plaintext != new_value


def test_replace_with_the_same_value_still_changes_every_byte_that_matters(
    secret: Secret, plaintext: str
) -> None:
    before = _reload(secret)
    old_wrapped, old_ciphertext = bytes(before.wrapped_dek), bytes(before.ciphertext)
    secret_replace(secret=before, plaintext=plaintext)
    after = _reload(secret)
    assert bytes(after.wrapped_dek)[1:13] != old_wrapped[1:13]
    assert bytes(after.ciphertext)[1:13] != old_ciphertext[1:13]
    assert bytes(after.ciphertext)[13:] != old_ciphertext[13:]
    assert secret_reveal(secret=after) == plaintext


def test_replace_wraps_under_the_currently_active_key(secret: Secret, settings) -> None:
    settings.AGENTKEY_MASTER_KEYS = BOTH_KEYS
    secret_replace(secret=_reload(secret), plaintext=new_credential())
    assert _reload(secret).kek_id == "testB"
    assert secret_create(plaintext=new_credential()).kek_id == "testB"


def test_two_secrets_with_the_same_value_share_no_bytes() -> None:
    value = new_credential()
    one, two = secret_create(plaintext=value), secret_create(plaintext=value)
    assert bytes(one.ciphertext) != bytes(two.ciphertext)
    assert bytes(one.wrapped_dek) != bytes(two.wrapped_dek)


@pytest.mark.parametrize(
    "value",
    ["", "   ", "\n\t ", "\u00a0\u3000\u2003"],
    ids=["empty", "spaces", "whitespace", "unicode-whitespace"],
)
def test_blank_credentials_are_refused(value: str) -> None:
    with pytest.raises(ValidationFailed, match="The credential is empty"):
        secret_create(plaintext=value)
    assert not Secret.objects.exists()


def test_credentials_over_64_kib_are_refused_and_64_kib_is_accepted() -> None:
    with pytest.raises(ValidationFailed, match="larger than 64 KiB") as caught:
        secret_create(plaintext="x" * (MAX_SECRET_BYTES + 1))
    assert "x" * 100 not in str(caught.value)
    assert len(secret_reveal(secret=secret_create(plaintext="y" * MAX_SECRET_BYTES))) == MAX_SECRET_BYTES


def test_deleted_secret_is_gone(secret: Secret) -> None:
    secret_delete(secret=secret)
    assert not Secret.objects.filter(pk=secret.pk).exists()


def test_no_plaintext_in_repr_or_str(secret: Secret, plaintext: str) -> None:
    stored = _reload(secret)
    texts = [str(stored), repr(stored), repr(Secret.objects.filter(pk=secret.pk)), repr(list(vars(stored)))]
    for text in texts:
        assert plaintext not in text
    assert str(stored) == f"secret {secret.id}"
    assert repr(stored) == f"<Secret {secret.id} kek=testA>"


# --- tampering ---------------------------------------------------------------------------------------

CIPHERTEXT_POSITIONS = {
    "version": 0,
    "nonce-first": 1,
    "nonce-last": 12,
    "body-first": 13,
    "body-middle": 13 + PLAINTEXT_LENGTH // 2,
    "body-last": 13 + PLAINTEXT_LENGTH - 1,
    "tag-first": -16,
    "tag-middle": -8,
    "tag-last": -1,
}


@pytest.mark.parametrize("position", CIPHERTEXT_POSITIONS.values(), ids=CIPHERTEXT_POSITIONS.keys())
def test_one_flipped_ciphertext_byte_is_refused(secret: Secret, plaintext: str, position: int) -> None:
    ciphertext = bytes(_reload(secret).ciphertext)
    Secret.objects.filter(pk=secret.pk).update(ciphertext=_flip(ciphertext, position))
    _refused(secret, plaintext)


WRAPPED_DEK_POSITIONS = {
    "version": 0,
    "nonce": 5,
    "key-first": 13,
    "key-last": 13 + DEK - 1,
    "tag-first": -16,
    "tag-last": -1,
}


@pytest.mark.parametrize("position", WRAPPED_DEK_POSITIONS.values(), ids=WRAPPED_DEK_POSITIONS.keys())
def test_one_flipped_wrapped_dek_byte_is_refused(secret: Secret, plaintext: str, position: int) -> None:
    wrapped = bytes(_reload(secret).wrapped_dek)
    Secret.objects.filter(pk=secret.pk).update(wrapped_dek=_flip(wrapped, position))
    _refused(secret, plaintext)


def test_ciphertexts_swapped_between_secrets_are_refused(secret: Secret, plaintext: str) -> None:
    other_value = new_credential("sk_live")
    other = secret_create(plaintext=other_value)
    mine, theirs = bytes(_reload(secret).ciphertext), bytes(_reload(other).ciphertext)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE vault_secret SET ciphertext = %s WHERE id = %s", [theirs, secret.id])
        cursor.execute("UPDATE vault_secret SET ciphertext = %s WHERE id = %s", [mine, other.id])
    _refused(secret, plaintext, other_value)
    _refused(other, plaintext, other_value)


def test_wrapped_deks_swapped_between_secrets_are_refused(secret: Secret, plaintext: str) -> None:
    other_value = new_credential("sk_live")
    other = secret_create(plaintext=other_value)
    mine, theirs = bytes(_reload(secret).wrapped_dek), bytes(_reload(other).wrapped_dek)
    Secret.objects.filter(pk=secret.pk).update(wrapped_dek=theirs)
    Secret.objects.filter(pk=other.pk).update(wrapped_dek=mine)
    _refused(secret, plaintext, other_value)
    _refused(other, plaintext, other_value)


def test_a_whole_row_copied_onto_another_secret_is_refused(secret: Secret, plaintext: str) -> None:
    other = secret_create(plaintext=new_credential("sk_live"))
    source = _reload(secret)
    Secret.objects.filter(pk=other.pk).update(
        kek_id=source.kek_id, wrapped_dek=bytes(source.wrapped_dek), ciphertext=bytes(source.ciphertext)
    )
    _refused(other, plaintext)


@pytest.mark.parametrize(
    "keep",
    [
        VERSION + NONCE + PLAINTEXT_LENGTH + TAG - 1,
        VERSION + NONCE + TAG,
        VERSION + NONCE + TAG - 1,
        13,
        1,
        0,
    ],
    ids=["minus-one", "no-body", "short-tag", "header-only", "version-only", "empty"],
)
def test_truncated_ciphertext_is_refused(secret: Secret, plaintext: str, keep: int) -> None:
    ciphertext = bytes(_reload(secret).ciphertext)
    Secret.objects.filter(pk=secret.pk).update(ciphertext=ciphertext[:keep])
    _refused(secret, plaintext)


def test_truncated_wrapped_dek_is_refused(secret: Secret, plaintext: str) -> None:
    wrapped = bytes(_reload(secret).wrapped_dek)
    Secret.objects.filter(pk=secret.pk).update(wrapped_dek=wrapped[:-1])
    _refused(secret, plaintext)


def test_kek_id_changed_to_another_configured_key_is_refused(
    secret: Secret, plaintext: str, settings
) -> None:
    settings.AGENTKEY_MASTER_KEYS = BOTH_KEYS
    assert secret_reveal(secret=_reload(secret)) == plaintext
    Secret.objects.filter(pk=secret.pk).update(kek_id="testB")
    error = _refused(secret, plaintext)
    assert "failed authentication" in str(error)


def test_kek_id_changed_to_an_unknown_key_is_refused(secret: Secret, plaintext: str) -> None:
    Secret.objects.filter(pk=secret.pk).update(kek_id="ghost")
    error = _refused(secret, plaintext)
    assert "'ghost' is not loaded" in str(error)


# --- a missing master key ----------------------------------------------------------------------------


def test_secret_under_a_key_no_longer_configured_names_the_key(
    secret: Secret, plaintext: str, settings
) -> None:
    settings.AGENTKEY_MASTER_KEYS = django_settings.TEST_MASTER_KEY_B
    error = _refused(secret, plaintext)
    assert "'testA'" in str(error)
    assert "AGENTKEY_MASTER_KEYS" in str(error)

    settings.AGENTKEY_MASTER_KEYS = BOTH_KEYS
    assert secret_reveal(secret=_reload(secret)) == plaintext


def test_vend_fails_closed_without_the_master_key(
    api, agent, tool, credential, operator, audit_log, settings
) -> None:
    grant_assign(agent=agent, tool=tool, actor=operator)
    settings.AGENTKEY_MASTER_KEYS = django_settings.TEST_MASTER_KEY_B
    audit_log.mark()

    response = api.credentials(tool.id)

    assert response.status_code == 503
    assert response.json() == {
        "error": "The service is temporarily unavailable.",
        "hint": "Retry in a few seconds. If this persists, tell a human operator.",
    }
    assert credential.encode() not in response.content
    for material in KEY_MATERIAL:
        assert material.encode() not in response.content
    assert audit_log.actions() == []
