"""Guide-suggestion uniqueness on a SHA-256 digest of the normalized text.

A unique index over the full normalized text fails for long non-Latin
suggestions (a B-tree entry is capped near 2.7 kB); the digest has a fixed size.
"""

import hashlib

from django.db import migrations, models


def fill_digests(apps, schema_editor):
    GuideSuggestion = apps.get_model("catalog", "GuideSuggestion")
    for row in GuideSuggestion.objects.only("id", "normalized_learned").iterator():
        digest = hashlib.sha256(row.normalized_learned.encode("utf-8", "surrogatepass")).hexdigest()
        GuideSuggestion.objects.filter(pk=row.pk).update(learned_digest=digest)


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="guidesuggestion",
            name="learned_digest",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(fill_digests, migrations.RunPython.noop),
        migrations.RemoveConstraint(model_name="guidesuggestion", name="catalog_guide_suggestion_unique"),
        migrations.AddConstraint(
            model_name="guidesuggestion",
            constraint=models.UniqueConstraint(
                fields=("tool", "base_version", "learned_digest"), name="catalog_guide_suggestion_unique"
            ),
        ),
    ]
