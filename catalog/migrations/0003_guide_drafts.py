"""AI setup-guide drafts: fetched from a documentation page, reviewed by an admin before use."""

import agentkey.core.ids
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_invitations"),
        ("catalog", "0002_guide_suggestion_digest"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="GuideDraft",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=agentkey.core.ids.uuid7, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("source_url", models.CharField(max_length=600)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "Pending"),
                            ("running", "Running"),
                            ("done", "Done"),
                            ("failed", "Failed"),
                        ],
                        default="pending",
                        max_length=16,
                    ),
                ),
                ("content", models.TextField(blank=True)),
                (
                    "model",
                    models.CharField(
                        help_text='The language model that wrote it, or "offline".', max_length=200
                    ),
                ),
                ("error", models.CharField(blank=True, max_length=500)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("applied_at", models.DateTimeField(blank=True, null=True)),
                ("applied_version", models.PositiveIntegerField(blank=True, null=True)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "org",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.organization",
                    ),
                ),
                (
                    "suggestion",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="catalog.toolsuggestion",
                    ),
                ),
                (
                    "tool",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="guide_drafts",
                        to="catalog.tool",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at"],
                "indexes": [
                    models.Index(fields=["org", "-created_at"], name="catalog_draft_org_created_idx"),
                    models.Index(fields=["tool", "-created_at"], name="catalog_draft_tool_created_idx"),
                ],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("status__in", ["pending", "running", "done", "failed"])),
                        name="catalog_guide_draft_status_valid",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("status", "done"), ("content", ""), _connector="OR"),
                        name="catalog_guide_draft_content_only_when_done",
                    ),
                ],
            },
        ),
    ]
