"""Site-wide views: health, and the error pages (JSON on agent paths, HTML elsewhere)."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from agentkey.core import errors

_JSON_PREFIXES = ("/api/", "/api", "/mcp")


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(_JSON_PREFIXES)


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
