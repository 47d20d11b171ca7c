"""The organization's anomaly kill switch: whether an anomaly alert suspends its agent at once."""

from __future__ import annotations

from accounts.models import Organization
from accounts.permissions import Capability, HumanActor, require
from accounts.services import _org_setting_change


def org_set_anomaly_auto_suspend(*, org: Organization, actor: HumanActor, enabled: bool) -> Organization:
    """Turn the kill switch on or off (owners and admins); audited as ``org.settings_changed``.

    Applies to alerts raised from now on; agents suspended earlier stay suspended.
    """
    require(actor, Capability.MANAGE_ORG, org.id)
    return _org_setting_change(org=org, actor=actor, setting="anomaly_auto_suspend", value=enabled)
