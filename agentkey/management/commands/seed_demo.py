from __future__ import annotations

import secrets
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.db import transaction

from accounts.models import Agent, AgentStatus, Organization, User
from accounts.permissions import Operator
from accounts.services import agent_create, agent_key_rotate, agent_reactivate, org_create
from agentkey.core.cli import OperatorCommand, OperatorError
from catalog.models import Tool
from grants.models import AccessGrant, GrantStatus
from grants.services import grant_assign, tool_add

DEMO_NAME = "AgentKey Demo"
DEMO_SLUG = "agentkey-demo"
DEMO_AGENT = "demo-agent"
DEMO_TOOL = "Demo Echo API"
DEMO_ADMIN = "admin@demo.local"
DEMO_GUIDE = (
    "Demo credential for trying AgentKey. Send it as `Authorization: Bearer <credential>` to the echo "
    "service. Never print or store it; fetch it again when you need it."
)


class Command(OperatorCommand):
    help = (
        "Create (or refresh) a demo organization, agent, tool and approved grant, plus a demo admin login. "
        "Prints a fresh agent key and a ready curl line. For local trials only."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--base-url", default=settings.AGENTKEY_PUBLIC_URL)
        parser.add_argument(
            "--force",
            action="store_true",
            help="Run even with production settings (it creates a superuser with a printed password).",
        )

    def run(self, **options: Any) -> dict[str, Any]:
        if settings.AGENTKEY_PRODUCTION and not options["force"]:
            raise OperatorError(
                "seed_demo refuses to run with production settings.",
                "It creates a superuser and prints its password. Use it on the embedded default "
                "(make run), or pass --force if this really is a throwaway instance.",
            )
        actor = Operator(label="seed_demo")
        with transaction.atomic():
            org = Organization.objects.filter(slug=DEMO_SLUG).first() or org_create(
                name=DEMO_NAME, actor=actor
            )
            agent = Agent.objects.filter(org=org, name=DEMO_AGENT).first()
            if agent is None:
                issued = agent_create(
                    org=org,
                    name=DEMO_AGENT,
                    description="A demo agent created by seed_demo.",
                    actor=actor,
                )
                agent, key = issued.agent, issued.key.plaintext
            else:
                # A refresh must print a key that works, even if someone suspended the demo agent.
                if agent.status != AgentStatus.ACTIVE:
                    agent = agent_reactivate(agent=agent, actor=actor)
                key = agent_key_rotate(agent=agent, actor=actor).plaintext
            tool = Tool.objects.filter(org=org, name=DEMO_TOOL).first()
            if tool is None:
                tool = tool_add(
                    org=org,
                    actor=actor,
                    name=DEMO_TOOL,
                    url="https://echo.demo.local",
                    description="A stand-in tool to try the flow end to end.",
                    credential="demo-" + secrets.token_urlsafe(18),
                    usage_guide=DEMO_GUIDE,
                ).tool
            grant = AccessGrant.objects.filter(agent=agent, tool=tool).first()
            if grant is None or grant.effective_status() != GrantStatus.APPROVED:
                grant_assign(agent=agent, tool=tool, actor=actor)
            password = secrets.token_urlsafe(12)
            admin = User.objects.filter(email=DEMO_ADMIN).first()
            if admin is None:
                admin = User.objects.create_superuser(DEMO_ADMIN, password)
            else:
                admin.set_password(password)
                admin.save(update_fields=["password"])
        base = options["base_url"].rstrip("/")
        return {
            "org": org.slug,
            "agent_id": str(agent.id),
            "api_key": key,
            "tool_id": str(tool.id),
            "admin_login": f"{base}/admin/  ({DEMO_ADMIN} / {password})",
            "try": f'curl -s -H "Authorization: Bearer {key}" {base}/api/tools/{tool.id}/credentials',
        }
