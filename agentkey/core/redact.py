"""Remove secret values from text an upstream echoes back (the tool proxy).

A secret can come back verbatim, percent-encoded (a URL the upstream echoes),
JSON-escaped, or inside base64 (an echoed ``Authorization: Basic`` header, a
token embedded in a base64 blob). :class:`Redactor` knows every such form of
every secret it is given and replaces each occurrence with ``[REDACTED]``,
also when an occurrence is split across the chunks of a streamed body.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator
from urllib.parse import quote, quote_plus

MARK = b"[REDACTED]"
# A base64 fragment shorter than this would also match unrelated text.
_MIN_BASE64_FRAGMENT = 8


def _base64_fragments(secret: bytes) -> set[bytes]:
    """The base64 characters that depend only on ``secret``, for each of the three
    alignments it can have inside a longer encoded value, in both alphabets."""
    out: set[bytes] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret)
        start = -(-offset * 8 // 6)  # first character made only of secret bits
        end = (offset + len(secret)) * 8 // 6  # past the last such character
        fragment = encoded[start:end]
        if len(fragment) >= _MIN_BASE64_FRAGMENT:
            out.add(fragment)
            out.add(fragment.translate(bytes.maketrans(b"+/", b"-_")))
    return out


def forms_of(secret: str) -> set[bytes]:
    """Every byte string under which ``secret`` may be echoed."""
    raw = secret.encode("utf-8")
    texts = {
        secret,
        quote(secret, safe=""),
        quote(secret, safe="").lower(),
        quote_plus(secret, safe=""),
        quote(secret, safe="/:"),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(secret)[1:-1].replace("/", "\\/"),
    }
    forms = {t.encode("utf-8") for t in texts if t}
    forms |= _base64_fragments(raw)
    return {f for f in forms if f}


class Redactor:
    """Replaces every form of the given secrets; ``feed`` chunks, then ``flush``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[bytes] = set()
        for secret in secrets:
            if secret:
                forms |= forms_of(secret)
        # Longest first, so a longer form wins over a shorter one starting at the same place.
        ordered = sorted(forms, key=lambda f: (-len(f), f))
        self._pattern = re.compile(b"|".join(re.escape(f) for f in ordered)) if ordered else None
        self._hold = max((len(f) for f in ordered), default=1) - 1
        self._pending = b""

    def text(self, value: str) -> str:
        """A header value (or any whole string) with every form replaced."""
        if self._pattern is None:
            return value
        data = value.encode("utf-8", "surrogateescape")
        return self._pattern.sub(MARK, data).decode("utf-8", "surrogateescape")

    def contains(self, value: str) -> bool:
        return self._pattern is not None and bool(
            self._pattern.search(value.encode("utf-8", "surrogateescape"))
        )

    def feed(self, chunk: bytes) -> bytes:
        """The part of the stream that is now safe to send.

        The last ``longest form - 1`` bytes are held back unless a replacement
        consumed them: a form that starts there may continue in the next chunk.
        Any match starting before that point lies wholly in the buffer, so the
        longest-first alternation decides it correctly.
        """
        if self._pattern is None:
            return chunk
        buffer = self._pending + chunk
        safe_end = len(buffer) - self._hold
        out, pos = [], 0
        for match in self._pattern.finditer(buffer):
            if match.start() >= safe_end:
                break
            out.append(buffer[pos : match.start()])
            out.append(MARK)
            pos = match.end()
        cut = max(pos, safe_end)
        out.append(buffer[pos:cut])
        self._pending = buffer[cut:]
        return b"".join(out)

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        if self._pattern is None:
            return rest
        return self._pattern.sub(MARK, rest)

    def stream(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            out = self.feed(chunk)
            if out:
                yield out
        tail = self.flush()
        if tail:
            yield tail
