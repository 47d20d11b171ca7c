"""The WSGI application: Django, with the MCP endpoint mounted at /mcp (agentkey.mcp.mount)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentkey.settings.base")

django_application = get_wsgi_application()

from agentkey.mcp.mount import McpMount  # noqa: E402  (needs the apps loaded by get_wsgi_application)

application = McpMount(django_application)
