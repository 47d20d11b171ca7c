"""All routes: the agent API, its OpenAPI schema, the admin, health."""

from __future__ import annotations

from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

import accounts.urls
import catalog.urls
import grants.urls
import notifications.urls
from agentkey import views
from grants.api import CredentialApi, GuideSuggestApi, MeApi, ToolListApi, ToolRequestApi, ToolSuggestApi
from grants.proxy import ProxyApi

# The admin signs in through allauth, so MFA protects the operator console too.
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]

handler400 = "agentkey.views.handler400"
handler404 = "agentkey.views.handler404"
handler500 = "agentkey.views.handler500"

# Agent API, AgentKey-compatible. Each route also answers with a trailing slash;
# the aliases are left out of the OpenAPI document (see schema.drop_slash_aliases).
_agent_routes = [
    ("api/tools", ToolListApi, "api-tools"),
    ("api/me", MeApi, "api-me"),
    ("api/tools/suggest", ToolSuggestApi, "api-tools-suggest"),
    ("api/tools/<str:tool_id>/request", ToolRequestApi, "api-tools-request"),
    ("api/tools/<str:tool_id>/credentials", CredentialApi, "api-tools-credentials"),
    ("api/tools/<str:tool_id>/instructions/suggest", GuideSuggestApi, "api-tools-instructions-suggest"),
]
agent_api = [path(route, view.as_view(), name=name) for route, view, name in _agent_routes] + [
    path(route + "/", view.as_view()) for route, view, _ in _agent_routes
]

# The human console: one namespace, assembled from each app's pages.
console = [
    *grants.urls.urlpatterns,
    *accounts.urls.urlpatterns,
    *catalog.urls.urlpatterns,
    *notifications.urls.urlpatterns,
]

# The tool proxy (docs/proxy.md): the agent's key, the tool's credential injected by AgentKey.
proxy = [
    path("proxy/<str:tool_id>", ProxyApi.as_view(), name="proxy-root"),
    path("proxy/<str:tool_id>/", ProxyApi.as_view(), name="proxy-root-slash"),
    path("proxy/<str:tool_id>/<path:path>", ProxyApi.as_view(), name="proxy"),
]

urlpatterns = [
    *agent_api,
    *proxy,
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("healthz", views.healthz, name="healthz"),
    path("", include((console, "console"))),
]
