"""Lookups shared by the accounts commands."""

from __future__ import annotations

from accounts.models import Agent, Membership, Organization, User
from accounts.permissions import Operator
from accounts.selectors import org_by_ref
from agentkey.core.cli import OperatorCommand, OperatorError, operator_label


def operator() -> Operator:
    return Operator(label=operator_label())


def find_org(ref: str) -> Organization:
    org = org_by_ref(ref)
    if org is None:
        raise OperatorError(
            f"No organization {ref!r}.", "Pass an organization id or slug (createorg prints both)."
        )
    return org


def find_agent(command: OperatorCommand, ref: str) -> Agent:
    agent = Agent.objects.filter(id=command.parse_uuid(ref, "agent")).first()
    if agent is None:
        raise OperatorError(f"No agent {ref}.", "Check the agent id (createagent prints it).")
    return agent


def find_member(org: Organization, email: str) -> User:
    membership = (
        Membership.objects.select_related("user").filter(org=org, user__email__iexact=email.strip()).first()
    )
    if membership is None:
        raise OperatorError(
            f"{email!r} is not a member of {org.name}.",
            "An agent's owner must be a member of its organization: give the email address they sign in with.",
        )
    return membership.user
