"""System checks for configuration that would otherwise fail at the first request."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks import Warning as CheckWarning

from agentkey.core.ratelimit import TIERS, Rate


@register(Tags.security, deploy=True)
def proxy_settings_check(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """HTTPS redirects behind a TLS proxy need the proxy to be trusted, or every request loops
    and every agent shares the proxy's pre-auth rate-limit bucket."""
    if getattr(settings, "SECURE_SSL_REDIRECT", False) and settings.TRUSTED_PROXY_COUNT == 0:
        return [
            CheckWarning(
                "SECURE_SSL_REDIRECT is on but TRUSTED_PROXY_COUNT is 0.",
                hint="Behind a TLS-terminating proxy set TRUSTED_PROXY_COUNT to the number of proxies "
                "(client addresses and the https scheme are then taken from them). If this server "
                "terminates TLS itself, silence agentkey.W001.",
                id="agentkey.W001",
            )
        ]
    return []


@register()
def ratelimit_settings_check(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    for tier in TIERS:
        try:
            Rate.parse(settings.AGENTKEY_RATELIMITS[tier])
        except (KeyError, ValueError) as exc:
            problems.append(
                Error(
                    f"AGENTKEY_RATELIMIT_{tier.upper()}: {exc}",
                    hint="Use a rate such as 60/m, 10/h or 100/5m.",
                    id="agentkey.E001",
                )
            )
    for tier in settings.AGENTKEY_RATELIMIT_FAIL_OPEN_TIERS:
        if tier not in TIERS:
            problems.append(
                Error(
                    f"AGENTKEY_RATELIMIT_FAIL_OPEN_TIERS names unknown tier {tier!r}.",
                    hint=f"Use some of: {', '.join(TIERS)}.",
                    id="agentkey.E002",
                )
            )
    return problems
