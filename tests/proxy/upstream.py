"""A real upstream API on 127.0.0.1 for the proxy tests: every method, chunked bodies, records requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Seen:
    method: str
    target: str  # the request target as received: path and query, still encoded
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> list[tuple[str, str]]:
        return parse_qsl(urlsplit(self.target).query, keep_blank_values=True)


@dataclass
class Reply:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=lambda: [("Content-Type", "application/json")])
    #: Sent as separate HTTP chunks (Transfer-Encoding: chunked), flushed one by one.
    chunks: list[bytes] = field(default_factory=lambda: [b'{"ok": true}'])


@dataclass
class Upstream:
    origin: str
    seen: list[Seen] = field(default_factory=list)


Respond = Callable[[Seen], Reply]


@contextmanager
def upstream(respond: Respond) -> Iterator[Upstream]:
    box: dict[str, Upstream] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen = Seen(
                self.command,
                self.path,
                {k.lower(): v for k, v in self.headers.items()},
                self.rfile.read(length) if length else b"",
            )
            box["u"].seen.append(seen)
            reply = respond(seen)
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            bodyless = self.command == "HEAD" or reply.status in (204, 304)
            if not bodyless:
                self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            if bodyless:
                return
            with suppress(BrokenPipeError, ConnectionResetError):
                for chunk in reply.chunks:
                    if chunk:
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                        self.wfile.flush()
                        time.sleep(0.005)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

        def log_message(self, *args: Any) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    box["u"] = Upstream(origin=f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield box["u"]
    finally:
        httpd.shutdown()
        httpd.server_close()
