"""Site-wide views: health, and the error pages (JSON on agent paths, HTML elsewhere)."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from agentkey.core import errors

_JSON_PREFIXES = ("/api/", "/api", "/mcp", "/proxy/")


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(_JSON_PREFIXES)


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's own 400s (a Host not allowed, too many query parameters) in the agent error shape."""
    if _wants_json(request):
        from agentkey.core.api import BAD_REQUEST

        return JsonResponse(errors.ValidationFailed(BAD_REQUEST).body(), status=400)
    return HttpResponse("Bad Request (400)\n", status=400, content_type="text/plain; charset=utf-8")


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(errors.NotFound(errors.NOT_FOUND).body(), status=404)
    return render(request, "404.html", status=404)


def handler500(request: HttpRequest) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(errors.DomainError(errors.SERVER_ERROR).body(), status=500)
    return render(request, "500.html", status=500)


def healthz(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """Liveness plus a database round trip; no details that help an attacker."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # noqa: BLE001  (any failure means "not ready")
        return JsonResponse({"status": "unavailable"}, status=503)
    return JsonResponse({"status": "ok"})
