from django.apps import AppConfig


class GrantsConfig(AppConfig):
    name = "grants"
    verbose_name = "Access grants"
    default_auto_field = "django.db.models.BigAutoField"
