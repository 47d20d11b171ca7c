"""Proxy mode, chosen per tool (issue #5): access mode, upstream origin, how the credential is injected."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0003_guide_drafts"),
    ]

    operations = [
        migrations.AddField(
            model_name="tool",
            name="access_mode",
            field=models.CharField(
                choices=[
                    ("vend", "Vend: approved agents fetch the credential"),
                    ("proxy", "Proxy: agents call the tool through AgentKey and never see the credential"),
                ],
                default="vend",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="tool",
            name="inject_as",
            field=models.CharField(
                choices=[("header", "A request header"), ("query", "A query-string parameter")],
                default="header",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="tool",
            name="inject_name",
            field=models.CharField(blank=True, default="Authorization", max_length=100),
        ),
        migrations.AddField(
            model_name="tool",
            name="inject_template",
            field=models.CharField(blank=True, default="Bearer {credential}", max_length=200),
        ),
        migrations.AddField(
            model_name="tool",
            name="upstream_origin",
            field=models.CharField(blank=True, max_length=300),
        ),
        migrations.AddConstraint(
            model_name="tool",
            constraint=models.CheckConstraint(
                condition=models.Q(("access_mode__in", ["vend", "proxy"])),
                name="catalog_tool_access_mode_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="tool",
            constraint=models.CheckConstraint(
                condition=models.Q(("inject_as__in", ["header", "query"])),
                name="catalog_tool_inject_as_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="tool",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("upstream_origin", ""),
                    ("upstream_origin__regex", "^https?://[^/?#@\\s]+$"),
                    _connector="OR",
                ),
                name="catalog_tool_upstream_origin_shape",
            ),
        ),
        migrations.AddConstraint(
            model_name="tool",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("access_mode", "vend"),
                    models.Q(
                        models.Q(("upstream_origin", ""), _negated=True),
                        models.Q(("inject_name", ""), _negated=True),
                        models.Q(
                            ("inject_as", "query"),
                            ("inject_template__contains", "{credential}"),
                            _connector="OR",
                        ),
                    ),
                    _connector="OR",
                ),
                name="catalog_tool_proxy_is_configured",
            ),
        ),
    ]
