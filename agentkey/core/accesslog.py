"""gunicorn's access log, without what a client may have put in a URL or a header.

``gunicorn --logger-class agentkey.core.accesslog.AccessLogger``: the request line, path,
query and referer are logged sanitized (``agentkey.core.logging.safe_path``), and no
request header, response header or environment variable can be referenced by a custom
``--access-logformat`` (an ``Authorization`` header would otherwise be one ``%({authorization}i)s``
away from the log). Everything else gunicorn logs is unchanged.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped]

from agentkey.core.logging import safe_path, safe_url


class AccessLogger(Logger):
    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        raw_uri = str(environ.get("RAW_URI") or environ.get("PATH_INFO") or "")
        atoms["r"] = f"{environ.get('REQUEST_METHOD')} {safe_path(raw_uri)} {environ.get('SERVER_PROTOCOL')}"
        atoms["U"] = safe_path(str(environ.get("PATH_INFO") or ""))
        query = str(environ.get("QUERY_STRING") or "")
        atoms["q"] = safe_path("?" + query)[1:] if query else ""
        referer = environ.get("HTTP_REFERER")
        atoms["f"] = safe_url(str(referer)) if referer else "-"
        # gunicorn falls back to "-" for an atom that is not there.
        for name in [name for name in atoms if name.startswith("{")]:
            del atoms[name]
        return atoms
