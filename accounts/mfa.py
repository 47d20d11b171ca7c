"""MFA secrets (TOTP keys, recovery-code seeds) are sealed under the master keys, not stored in the clear."""

from __future__ import annotations

from allauth.mfa.adapter import DefaultMFAAdapter

from vault.sealing import is_sealed, seal_text, unseal_text

PURPOSE = "mfa"


class MFAAdapter(DefaultMFAAdapter):
    def encrypt(self, text: str) -> str:
        return seal_text(text, purpose=PURPOSE)

    def decrypt(self, encrypted_text: str) -> str:
        # A value stored before sealing existed is read as is; rotate_master_key seals it.
        if not is_sealed(encrypted_text):
            return encrypted_text
        return unseal_text(encrypted_text, purpose=PURPOSE)


SEALED_FIELDS = ("secret", "seed")  # TOTP key; recovery-code seed


def mfa_secrets_reseal() -> tuple[int, set[str]]:
    """Seal every MFA secret under the active master key (master-key rotation).

    Returns how many authenticators changed and the key ids still in use.
    """
    from allauth.mfa.models import Authenticator
    from django.db import transaction

    from vault.keyring import get_keyring
    from vault.sealing import reseal_text, sealed_key_id

    keyring = get_keyring()
    changed, in_use = 0, set()
    for pk in Authenticator.objects.values_list("pk", flat=True).order_by("pk"):
        with transaction.atomic():
            row = Authenticator.objects.select_for_update().get(pk=pk)
            data, dirty = dict(row.data), False
            for name in SEALED_FIELDS:
                value = data.get(name)
                if isinstance(value, str) and sealed_key_id(value) != keyring.active_id:
                    data[name] = reseal_text(value, purpose=PURPOSE, keyring=keyring)
                    dirty = True
                if isinstance(data.get(name), str):
                    in_use.add(sealed_key_id(data[name]) or "")
            if dirty:
                row.data = data
                row.save(update_fields=["data"])
                changed += 1
    in_use.discard("")
    return changed, in_use
