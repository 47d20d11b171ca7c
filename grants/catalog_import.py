"""Importing a catalog file (catalog.ascode) through the tool services, in one transaction.

New tools go through ``tool_add`` (so pending suggestions they answer open
requests for their backers), changed ones through ``tool_edit`` (marking one as
a canary ends its access) and ``tool_guide_update``: every change writes its
own audit event, and an unchanged tool writes none. A refusal anywhere rolls
the whole import back.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from accounts.models import Organization
from accounts.permissions import Capability, HumanActor, require
from agentkey.core.errors import DomainError, FieldError, Message, ValidationFailed
from catalog.ascode import CREATE, UPDATE, Plan, ToolSpec, catalog_plan
from catalog.services import tool_guide_update
from grants.services import tool_add, tool_edit

REFUSED = Message("{key}: {error}", "{hint} Nothing was imported.")


def catalog_import(*, org: Organization, actor: HumanActor, specs: list[ToolSpec]) -> Plan:
    """Create the missing tools and update the changed ones; never delete. Returns what was done."""
    require(actor, Capability.MANAGE_TOOLS, org.id)
    with transaction.atomic():
        plan = catalog_plan(org=org, specs=specs)
        for step in plan.steps:
            values: dict[str, Any] = dict(step.spec.values)
            try:
                if step.action == CREATE:
                    tool_add(org=org, actor=actor, config_key=step.spec.config_key, **values)
                elif step.action == UPDATE and step.tool is not None:
                    fields: dict[str, Any] = {f: values[f] for f in step.fields if f != "usage_guide"}
                    if fields:
                        tool_edit(tool=step.tool, actor=actor, **fields)
                    if "usage_guide" in step.fields:
                        tool_guide_update(tool=step.tool, actor=actor, content=values["usage_guide"])
            except DomainError as exc:
                message = REFUSED.format(
                    key=step.spec.where or step.spec.config_key, error=exc.error, hint=exc.hint
                )
                details = [FieldError(f"{step.spec.where}.{d.field}", d.message) for d in exc.details]
                raise ValidationFailed(message, details=details) from exc
    return plan
