"""State changes for notifications (STYLE §13: a package, re-exported so callers do not change).

- ``endpoints``: channels (Slack, Discord, generic signed webhooks), their URLs and signing secrets;
- ``email``: the organization's email setting and who receives email;
- ``outbox``: ``notify`` (called by the domain services), sending, retries, the sweep job.
"""

from __future__ import annotations

from notifications.services.email import email_recipients, email_settings_for, email_settings_update
from notifications.services.endpoints import (
    check_reachable,
    clean_url,
    endpoint_create,
    endpoint_delete,
    endpoint_set_enabled,
    endpoint_signing_secret_rotate,
    endpoint_update,
    url_hint,
)
from notifications.services.outbox import (
    BACKOFF_SECONDS,
    MAX_ATTEMPTS,
    Attempt,
    Swept,
    deliveries_sweep,
    delivery_attempt,
    delivery_retry,
    delivery_send_test,
    notify,
)

__all__ = [
    "BACKOFF_SECONDS",
    "MAX_ATTEMPTS",
    "Attempt",
    "Swept",
    "check_reachable",
    "clean_url",
    "deliveries_sweep",
    "delivery_attempt",
    "delivery_retry",
    "delivery_send_test",
    "email_recipients",
    "email_settings_for",
    "email_settings_update",
    "endpoint_create",
    "endpoint_delete",
    "endpoint_set_enabled",
    "endpoint_signing_secret_rotate",
    "endpoint_update",
    "notify",
    "url_hint",
]
