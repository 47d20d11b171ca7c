"""The organization's anomaly kill switch: whether an anomaly alert suspends its agent at once."""

from __future__ import annotations

from django.db import transaction

from accounts.models import Organization
from accounts.permissions import Capability, HumanActor, require
from audit.models import Action
from audit.services import audit_record


def org_set_anomaly_auto_suspend(*, org: Organization, actor: HumanActor, enabled: bool) -> Organization:
    """Turn the kill switch on or off (owners and admins); audited as ``org.settings_changed``.

    Applies to alerts raised from now on; agents suspended earlier stay suspended.
    """
    require(actor, Capability.MANAGE_ORG, org.id)
    with transaction.atomic():
        # NO KEY UPDATE, like the other organization settings: no conflict with foreign-key checks.
        locked = Organization.objects.select_for_update(no_key=True).get(pk=org.pk)
        previous = locked.anomaly_auto_suspend
        if previous != enabled:
            locked.anomaly_auto_suspend = enabled
            locked.save(update_fields=["anomaly_auto_suspend"])
            audit_record(
                action=Action.ORG_SETTINGS_CHANGED,
                actor=actor,
                target=locked,
                metadata={"setting": "anomaly_auto_suspend", "from": previous, "to": enabled},
            )
    org.anomaly_auto_suspend = locked.anomaly_auto_suspend
    return locked
