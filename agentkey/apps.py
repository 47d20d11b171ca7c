from django.apps import AppConfig


class AgentKeyConfig(AppConfig):
    """The composition root as an app: operator commands that span apps, system checks."""

    name = "agentkey"
    verbose_name = "AgentKey"

    def ready(self) -> None:
        from agentkey import celery, checks  # noqa: F401  (load the Celery app; register checks)
