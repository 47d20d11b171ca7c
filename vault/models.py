"""The vault's only model: an encrypted secret.

No foreign keys: the tool, grant or webhook that owns a secret points to it,
so vault stays a leaf. Never add a field that holds plaintext.
"""

from __future__ import annotations

from django.db import models

from agentkey.core.ids import uuid7


class Secret(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    kek_id = models.CharField(max_length=32, help_text="Id of the master key that wraps this secret's DEK.")
    wrapped_dek = models.BinaryField()
    ciphertext = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["kek_id"], name="vault_secret_kek_idx")]

    def __str__(self) -> str:
        return f"secret {self.id}"

    def __repr__(self) -> str:
        return f"<Secret {self.id} kek={self.kek_id}>"
