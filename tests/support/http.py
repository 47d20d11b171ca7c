"""An agent's view of the API through Django's test client."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client

# The test client's responses carry .json(); typed loosely so tests can use it.
HttpResponse = Any


class AgentClient:
    """Speaks the agent API with a bearer key, like an agent would."""

    def __init__(self, key: str | None, client: Client | None = None) -> None:
        self.key = key
        self.client = client or Client()

    def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        headers = {} if self.key is None else {"Authorization": f"Bearer {self.key}"}
        headers.update(extra)
        return headers

    def get(self, path: str, **headers: str) -> HttpResponse:
        return self.client.get(path, headers=self._headers(headers))

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        raw: bytes | str | None = None,
        **headers: str,
    ) -> HttpResponse:
        data = raw if raw is not None else (json.dumps(body) if body is not None else "")
        return self.client.post(path, data=data, content_type=content_type, headers=self._headers(headers))

    # The agent journey, spelled the way the agent prompt spells it.
    def tools(self) -> HttpResponse:
        return self.get("/api/tools")

    def me(self) -> HttpResponse:
        return self.get("/api/me")

    def request_access(
        self, tool_id: Any, reason: str = "I need it to file bugs for the team.", **extra: Any
    ) -> HttpResponse:
        return self.post(f"/api/tools/{tool_id}/request", {"reason": reason, **extra})

    def credentials(self, tool_id: Any, **headers: str) -> HttpResponse:
        return self.get(f"/api/tools/{tool_id}/credentials", **headers)

    def suggest(
        self, name: str, reason: str = "The team tracks all work there.", url: str | None = None
    ) -> HttpResponse:
        body: dict[str, Any] = {"name": name, "reason": reason}
        if url is not None:
            body["url"] = url
        return self.post("/api/tools/suggest", body)

    def suggest_instructions(
        self, tool_id: Any, learned: str, why: str = "Saves the next agent an hour."
    ) -> HttpResponse:
        return self.post(f"/api/tools/{tool_id}/instructions/suggest", {"learned": learned, "why": why})


def access_of(response: HttpResponse, tool_id: Any) -> str:
    for tool in response.json()["tools"]:
        if tool["id"] == str(tool_id):
            return str(tool["your_access"])
    raise AssertionError(f"tool {tool_id} not listed")
