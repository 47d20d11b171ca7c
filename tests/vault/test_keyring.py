"""Master keys from AGENTKEY_MASTER_KEYS: parsing, errors that never echo key material, the system check."""

from __future__ import annotations

import base64
import secrets

import pytest
from django.conf import settings as django_settings

from agentkey.core.errors import CryptoError
from vault.checks import master_keys_check
from vault.keyring import Keyring, KeyringError, get_keyring, parse_master_keys


def _material(size: int = 32) -> str:
    return base64.b64encode(secrets.token_bytes(size)).decode()


def _raw(material: str) -> bytes:
    return base64.b64decode(material)


MATERIAL_1 = _material()
MATERIAL_2 = _material()


def _assert_no_material(text: str, *materials: str) -> None:
    for material in materials:
        assert material not in text
        assert material.rstrip("=") not in text
        assert _raw(material).hex() not in text


def test_first_entry_is_the_active_key() -> None:
    keyring = parse_master_keys(f"new:{MATERIAL_1},old:{MATERIAL_2}")
    assert keyring.active_id == "new"
    assert keyring.active_key == _raw(MATERIAL_1)
    assert dict(keyring.keys) == {"new": _raw(MATERIAL_1), "old": _raw(MATERIAL_2)}
    assert keyring.key("old") == _raw(MATERIAL_2)


@pytest.mark.parametrize(
    "separator",
    [",", " ", "\n", ", ", " ,\n\t", "\r\n"],
    ids=["comma", "space", "newline", "comma-space", "mixed", "crlf"],
)
def test_entries_are_separated_by_commas_or_whitespace(separator: str) -> None:
    keyring = parse_master_keys(f"  k1:{MATERIAL_1}{separator}k2:{MATERIAL_2}\n")
    assert keyring.active_id == "k1"
    assert sorted(keyring.keys) == ["k1", "k2"]


def test_urlsafe_and_unpadded_base64_are_accepted() -> None:
    raw = bytes([0xFB, 0xFF] * 16)  # encodes to + and / in standard base64
    standard = base64.b64encode(raw).decode()
    urlsafe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert "+" in standard or "/" in standard
    assert parse_master_keys(f"k:{urlsafe}").active_key == raw
    assert parse_master_keys(f"k:{standard}").active_key == raw


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "is empty"),
        ("   \n , ", "is empty"),
        (MATERIAL_1, "must look like id:base64key"),
        ("k1:", "must look like id:base64key"),
        (f":{MATERIAL_1}", "invalid id"),
        (f"bad#id!:{MATERIAL_1}", "invalid id"),
        (f"{'x' * 33}:{MATERIAL_1}", "invalid id"),
        (f"{MATERIAL_2}:{MATERIAL_1}", "invalid id"),
        (f"k1:{MATERIAL_1[:-4]}!!!!", "not valid base64"),
        (f"k1:{MATERIAL_1[:10]}*{MATERIAL_1[11:]}", "not valid base64"),
        (f"k1:{_material(31)}", "must decode to 32 bytes, got 31"),
        (f"k1:{_material(33)}", "must decode to 32 bytes, got 33"),
        (f"k1:{_material(16)}", "must decode to 32 bytes, got 16"),
        (f"k1:{MATERIAL_1},k1:{MATERIAL_2}", "appears twice"),
        (f"ok:{MATERIAL_2},{MATERIAL_1}", "#2 must look like id:base64key"),
    ],
    ids=[
        "empty",
        "only-separators",
        "missing-colon",
        "missing-material",
        "missing-id",
        "bad-id-chars",
        "id-too-long",
        "key-and-id-swapped",
        "bad-base64",
        "bad-base64-char",
        "31-bytes",
        "33-bytes",
        "16-bytes",
        "duplicate-id",
        "second-entry-broken",
    ],
)
def test_broken_configuration_is_refused_without_echoing_key_material(value: str, expected: str) -> None:
    with pytest.raises(KeyringError, match=expected) as caught:
        parse_master_keys(value)
    _assert_no_material(str(caught.value), MATERIAL_1, MATERIAL_2)
    for token in value.replace(",", " ").split():
        material = token.partition(":")[2] or token
        if len(material) >= 16:
            assert material not in str(caught.value)


def test_repr_and_str_of_a_keyring_name_ids_only() -> None:
    keyring = parse_master_keys(f"k1:{MATERIAL_1},k2:{MATERIAL_2}")
    for text in (repr(keyring), str(keyring), f"{keyring}", f"{keyring!r}"):
        assert "k1" in text
        assert "k2" in text
        _assert_no_material(text, MATERIAL_1, MATERIAL_2)
        assert repr(_raw(MATERIAL_1)) not in text
        assert repr(_raw(MATERIAL_2)) not in text
    assert repr(keyring) == "Keyring(active_id='k1', key_ids=['k1', 'k2'])"


def test_keyring_follows_the_configuration(settings) -> None:
    assert get_keyring().active_id == "testA"
    settings.AGENTKEY_MASTER_KEYS = f"{django_settings.TEST_MASTER_KEY_B},{django_settings.TEST_MASTER_KEY_A}"
    keyring = get_keyring()
    assert isinstance(keyring, Keyring)
    assert keyring.active_id == "testB"
    assert sorted(keyring.keys) == ["testA", "testB"]


def test_a_missing_key_id_raises_a_crypto_error_naming_the_id() -> None:
    keyring = parse_master_keys(f"k1:{MATERIAL_1}")
    with pytest.raises(CryptoError, match="'gone' is not loaded") as caught:
        keyring.key("gone")
    _assert_no_material(str(caught.value), MATERIAL_1)


def test_misconfigured_keys_surface_as_a_crypto_error_without_material(settings) -> None:
    settings.AGENTKEY_MASTER_KEYS = f"k1:{_material(31)},k2:{MATERIAL_2}"
    with pytest.raises(CryptoError, match="master keys misconfigured") as caught:
        get_keyring()
    _assert_no_material(str(caught.value), MATERIAL_2)


# --- the system check ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["", MATERIAL_1, f"k1:{_material(33)}", f"k1:{MATERIAL_1},k1:{MATERIAL_2}", f"bad#id:{MATERIAL_1}"],
    ids=["empty", "missing-colon", "wrong-length", "duplicate", "bad-id"],
)
def test_system_check_reports_a_broken_configuration(settings, value: str) -> None:
    settings.AGENTKEY_MASTER_KEYS = value
    messages = master_keys_check(None)
    assert [m.id for m in messages] == ["vault.E001"]
    [error] = messages
    assert error.is_serious()
    assert "AGENTKEY_MASTER_KEYS" in str(error.hint)
    _assert_no_material(f"{error.msg} {error.hint}", MATERIAL_1, MATERIAL_2)


def test_system_check_passes_a_valid_configuration(settings) -> None:
    settings.AGENTKEY_MASTER_KEYS = f"{django_settings.TEST_MASTER_KEY_B},{django_settings.TEST_MASTER_KEY_A}"
    assert master_keys_check(None) == []


def test_system_check_warns_about_a_generated_key(settings, tmp_path) -> None:
    settings.AGENTKEY_MASTER_KEYS_GENERATED = str(tmp_path / "master.keys")
    [warning] = master_keys_check(None)
    assert warning.id == "vault.W001"
    assert not warning.is_serious()
    assert str(tmp_path / "master.keys") in warning.msg
