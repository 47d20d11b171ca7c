"""The safe HTTP client refuses internal addresses at every hop and bounds every exchange."""

from __future__ import annotations

import socket
import time

import pytest

from agentkey.core.http import FetchFailed, UnsafeURL, check_url, request
from tests.support.servers import serve


@pytest.fixture
def loopback_allowed(settings):
    settings.AGENTKEY_ALLOW_LOOPBACK_URLS = True


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/hook", "a loopback address"),
        ("https://10.0.0.5/hook", "a private address"),
        ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
        ("https://[::1]/hook", "a loopback address"),
        ("https://[::ffff:10.0.0.5]/hook", "a private address (inside an IPv6 address)"),
        ("https://100.64.1.1/hook", "a carrier-grade NAT address"),
        ("https://0.0.0.0/hook", "an unspecified address"),
        ("https://224.0.0.1/hook", "a reserved address"),
        ("https://192.168.1.20/hook", "a private address"),
        ("https://[fe80::1]/hook", "a link-local address"),
        ("http://localhost:8000/hook", "a loopback address"),
    ],
)
def test_internal_addresses_are_refused_with_the_reason(url, reason, settings):
    settings.AGENTKEY_ALLOW_LOOPBACK_URLS = False
    with pytest.raises(UnsafeURL) as refused:
        check_url(url)
    assert reason in refused.value.error
    assert "public addresses" in refused.value.error
    assert refused.value.hint


def test_a_hostname_that_resolves_to_a_private_address_is_refused(monkeypatch):
    real = socket.getaddrinfo

    def fake_dns(host, *args, **kwargs):  # DNS is outside the project: stand in for it
        if host == "internal.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 443))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    with pytest.raises(UnsafeURL) as refused:
        check_url("https://internal.example.com/hook")
    assert "internal.example.com resolves to 10.1.2.3, a private address" in refused.value.error


def test_one_private_answer_among_public_ones_is_refused(monkeypatch):
    def fake_dns(host, *args, **kwargs):
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 443)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    with pytest.raises(UnsafeURL):
        check_url("https://round-robin.example.com/")


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "https://user:pass@example.com/", "not a url", "https://", "javascript:alert(1)"],
)
def test_malformed_or_credentialed_urls_are_refused(url):
    with pytest.raises(UnsafeURL):
        check_url(url)


def test_https_only_and_port_rules(monkeypatch):
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 0))],
    )
    with pytest.raises(UnsafeURL, match="Only https"):
        check_url("http://example.com/hook", https_only=True)
    with pytest.raises(UnsafeURL, match="Port 8443"):
        check_url("https://example.com:8443/docs", ports=(80, 443))
    assert check_url("https://example.com/docs", ports=(80, 443)).address == "93.184.216.34"


def test_a_redirect_to_an_internal_address_is_refused_at_that_hop(loopback_allowed):
    with serve(lambda r: (302, {"Location": "http://10.0.0.5/admin"}, b"")) as server:
        with pytest.raises(UnsafeURL) as refused:
            request("GET", server.url + "/docs")
    assert "redirected to http://10.0.0.5/admin" in refused.value.error
    assert "private address" in refused.value.error


def test_a_redirect_to_the_metadata_service_is_refused(loopback_allowed):
    with serve(lambda r: (307, {"Location": "http://169.254.169.254/latest/"}, b"")) as server:
        with pytest.raises(UnsafeURL, match="metadata"):
            request("POST", server.url + "/hook", body=b"{}")


def test_redirects_between_allowed_hosts_are_followed_and_capped(loopback_allowed):
    with serve(lambda r: (200, {}, b"final")) as final:
        with serve(lambda r: (301, {"Location": final.url + "/here"}, b"")) as hop:
            response = request("GET", hop.url + "/start")
            assert (response.status, response.body) == (200, b"final")
        with serve(lambda r: (302, {"Location": "/again"}, b"")) as loop:
            with pytest.raises(FetchFailed, match="more than 3 times"):
                request("GET", loop.url + "/again")


def test_a_post_does_not_follow_a_302(loopback_allowed):
    with serve(lambda r: (302, {"Location": "/elsewhere"}, b"")) as server:
        response = request("POST", server.url + "/hook", body=b"{}")
    assert response.status == 302
    assert [r.path for r in server.requests] == ["/hook"]


def test_the_body_is_capped(loopback_allowed):
    with serve(lambda r: (200, {}, b"x" * 300_000)) as server:
        with pytest.raises(FetchFailed, match="larger than 100000 bytes"):
            request("GET", server.url, max_bytes=100_000)


def test_a_hanging_server_times_out(loopback_allowed):
    def slow(received):
        time.sleep(3)
        return 200, {}, b"late"

    with serve(slow) as server:
        started = time.monotonic()
        with pytest.raises(FetchFailed, match="did not answer within 1 seconds"):
            request("GET", server.url, timeout=1.0)
        assert time.monotonic() - started < 2.5


def test_the_connection_goes_to_the_checked_address_with_the_original_host_header(
    loopback_allowed, monkeypatch
):
    with serve(lambda r: (200, {}, b"ok")) as server:
        port = server.url.rsplit(":", 1)[1]
        calls = []

        def fake_dns(host, *args, **kwargs):
            calls.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", int(port)))]

        monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
        response = request("GET", f"http://hooks.example.test:{port}/x")
    assert response.status == 200
    assert calls.count("hooks.example.test") == 1, "the hostname is resolved once, at the check"
    assert set(calls) <= {"hooks.example.test", "127.0.0.1"}, "the connection uses the checked address"
    assert server.requests[0].headers["host"] == f"hooks.example.test:{port}"
