"""Watch the whole test run for secret values where they must never appear.

Every credential that passes through the vault and every agent key that is
generated is registered. Every log record, every exception rendered by the
API's error handler and every HTTP response captured by the test clients is
recorded, except the body of a successful credential vend (the one place a
credential may leave). At the end of the session the corpus is searched for
every registered secret; a hit fails the run.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field

VEND_PATH = re.compile(r"^/api/tools/[^/]+/credentials/?$")
MIN_SECRET_LENGTH = 10


@dataclass
class SecretWatch:
    secrets: set[str] = field(default_factory=set)
    corpus: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, value: str) -> None:
        if len(value) >= MIN_SECRET_LENGTH:
            with self.lock:
                self.secrets.add(value)

    def record(self, where: str, text: str) -> None:
        with self.lock:
            self.corpus.append((where, text))

    def record_response(self, method: str, path: str, status: int, headers: str, body: bytes) -> None:
        if method == "GET" and status == 200 and VEND_PATH.match(path):
            self.record(f"{method} {path} headers", headers)
            return
        self.record(f"{method} {path} -> {status}", headers + "\n" + body.decode("utf-8", "replace"))

    def leaks(self) -> list[tuple[str, str]]:
        found = []
        with self.lock:
            for where, text in self.corpus:
                for secret in self.secrets:
                    if secret in text:
                        found.append((where, secret[:6] + "…"))
        return found


WATCH = SecretWatch()


class CaptureHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # noqa: BLE001
            text = str(record.msg)
        WATCH.record(f"log {record.name}", text)
