"""The redactor strips every form of a secret, wherever a stream happens to cut it."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

import pytest

from agentkey.core.redact import MARK, Redactor

SECRET = "sk_live_4eC39HqLyjWDarjtT1zdp7dc/+=="


def stream_through(redactor: Redactor, data: bytes, cuts: list[int]) -> bytes:
    pieces, last = [], 0
    for cut in [*cuts, len(data)]:
        pieces.append(data[last:cut])
        last = cut
    return b"".join(redactor.stream(pieces))


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        quote(SECRET, safe=""),
        quote(SECRET, safe="").lower(),
        quote_plus(SECRET),
        json.dumps(SECRET)[1:-1].replace("/", "\\/"),
    ],
)
def test_each_textual_form_is_replaced_at_every_split_point(form):
    data = f'{{"a": "x{form}y", "b": 1}}'.encode()
    for cut in range(len(data) + 1):
        out = stream_through(Redactor([SECRET]), data, [cut])
        assert out == data.replace(form.encode(), MARK), cut


@pytest.mark.parametrize("prefix", ["", "u:", "us:", "use:", "user:"])
def test_the_secret_inside_base64_is_replaced_whatever_its_alignment(prefix):
    encoded = base64.b64encode(f"{prefix}{SECRET}".encode())
    urlsafe = base64.urlsafe_b64encode(f"{prefix}{SECRET}".encode())
    for blob in (encoded, urlsafe):
        out = b"".join(Redactor([SECRET]).stream([b"Basic " + blob]))
        assert MARK in out
        # What is left cannot be decoded back into the secret.
        assert SECRET.encode() not in base64.b64decode(
            out.removeprefix(b"Basic ").replace(MARK, b"") + b"==="
        )


def test_one_byte_chunks_and_repeated_occurrences():
    data = (SECRET + "|") * 5
    out = b"".join(Redactor([SECRET]).stream([bytes([b]) for b in data.encode()]))
    assert out == (MARK + b"|") * 5


def test_text_without_the_secret_passes_unchanged_and_in_order():
    data = bytes(range(256)) * 40
    assert stream_through(Redactor([SECRET]), data, [1, 7, 300, 5000]) == data


def test_header_values_and_names():
    redactor = Redactor([SECRET])
    assert redactor.text(f"Bearer {SECRET}") == "Bearer [REDACTED]"
    assert redactor.contains(f"x-{SECRET}")
    assert not redactor.contains("x-nothing")
