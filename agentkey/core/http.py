"""An HTTP client for URLs that people or agents supply (webhooks, documentation pages).

Every hop is checked after DNS resolution: the host must resolve only to
globally routable addresses (no private, loopback, link-local, carrier-grade
NAT, multicast, reserved or cloud-metadata address, including IPv4 hidden
inside IPv6), and the connection is then made to the very address that was
checked, with TLS verifying the original hostname. So a DNS answer that
changes between the check and the connection (rebinding) cannot reach an
internal service. Redirects are followed by hand, each hop checked again.
Bodies are capped and the whole exchange has a deadline.

:func:`open_stream` is the streaming mode (the tool proxy): one request to a
checked target, redirects never followed, the body handed back chunk by chunk.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3
from django.conf import settings

from agentkey.core.errors import Message, ValidationFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Addresses is_global does not catch on every Python version, named for the error message.
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_CGNAT = ipaddress.ip_network("100.64.0.0/10")

BAD_URL = Message(
    "{url!r} is not a valid http(s) URL.", "Use a full URL such as https://hooks.example.com/agentkey."
)
HTTPS_ONLY = Message(
    "Only https:// URLs are accepted here.", "Use the https:// address the service gives you."
)
BAD_PORT = Message("Port {port} is not allowed here.", "Use the service's standard address (ports {ports}).")
UNRESOLVABLE = Message("The host {host!r} does not resolve.", "Check the address for typos.")
REFUSED_ADDRESS = Message(
    "{host} resolves to {address}, {kind}; AgentKey only calls public addresses.",
    "Use the service's public URL. Internal services cannot be reached from here, by design.",
)
REDIRECTED_AWAY = Message(
    "The URL redirected to {target}, which is refused: {reason}",
    "Use the final public URL directly.",
)
TOO_MANY_REDIRECTS = Message("The URL redirected more than {limit} times.", "Use the final URL directly.")
TOO_LARGE = Message("The response is larger than {limit} bytes.", "Use a smaller page.")
TIMED_OUT = Message(
    "The server did not answer within {seconds} seconds.", "Try again later, or use another URL."
)
UNREACHABLE = Message(
    "Could not connect to {host}: {reason}.", "Check that the service is up and the URL is right."
)


class UnsafeURL(ValidationFailed):
    """The URL may not be called (a validation error: the caller gets 400 with the reason)."""


class FetchFailed(Exception):
    """The remote side failed (timeout, refused, too large): a delivery error, not a validation error."""

    def __init__(self, message: Message) -> None:
        super().__init__(message.error)
        self.message = message


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (``address``) and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str
    address: str
    url: str = field(compare=False)

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    url: str

    def text(self) -> str:
        charset = "utf-8"
        content_type = self.headers.get("content-type", "")
        if "charset=" in content_type:
            charset = content_type.split("charset=", 1)[1].split(";", 1)[0].strip() or "utf-8"
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")


def _loopback_allowed() -> bool:
    return bool(getattr(settings, "AGENTKEY_ALLOW_LOOPBACK_URLS", False))


def classify(address: IPAddress) -> str | None:
    """Why an address is refused, or None when it is publicly routable."""
    embedded = []
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
        if address.teredo:
            embedded.append(address.teredo[1])
    for inner in embedded:
        reason = classify(inner)
        if reason:
            return f"{reason} (inside an IPv6 address)"
    if address in _METADATA:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return None if _loopback_allowed() else "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a carrier-grade NAT address"
    if address.is_private:
        return "a private address"
    if address.is_multicast or address.is_reserved or not address.is_global:
        return "a reserved address"
    return None


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeURL(UNRESOLVABLE.format(host=host)) from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def check_url(url: str, *, https_only: bool = False, ports: Iterable[int] | None = None) -> Target:
    """Validate ``url`` and resolve it; raise UnsafeURL with a clear reason otherwise.

    Every address the host resolves to must be public: one private answer among
    public ones is refused too, so a round-robin record cannot sneak one in.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise UnsafeURL(BAD_URL.format(url=url[:200])) from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host or parts.username or parts.password:
        raise UnsafeURL(BAD_URL.format(url=url[:200]))
    port = port or (443 if scheme == "https" else 80)
    addresses = _resolve(host, port)
    loopback_dev = _loopback_allowed() and all(a.is_loopback for a in addresses)
    if https_only and scheme != "https" and not loopback_dev:
        raise UnsafeURL(HTTPS_ONLY)
    allowed = tuple(ports or ())
    if allowed and port not in allowed and not loopback_dev:
        raise UnsafeURL(BAD_PORT.format(port=port, ports=", ".join(map(str, allowed))))
    for address in addresses:
        reason = classify(address)
        if reason:
            raise UnsafeURL(REFUSED_ADDRESS.format(host=host, address=address, kind=reason))
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme=scheme, host=host, port=port, path=path, address=str(addresses[0]), url=url.strip())


def _pool(target: Target, timeout: urllib3.Timeout) -> urllib3.HTTPConnectionPool:
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            target.address,
            target.port,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            timeout=timeout,
            retries=False,
            maxsize=1,
        )
    return urllib3.HTTPConnectionPool(target.address, target.port, timeout=timeout, retries=False, maxsize=1)


def request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
    max_bytes: int = 1024 * 1024,
    max_redirects: int = 3,
    https_only: bool = False,
    ports: Iterable[int] | None = None,
) -> Response:
    """Make one request to a checked address, following redirects by hand (each hop checked).

    Raises UnsafeURL when a URL or a redirect target is refused, FetchFailed when
    the remote side fails. A POST follows only 307/308 (which keep the method).
    """
    deadline = time.monotonic() + timeout
    current = url
    for _hop in range(max_redirects + 1):
        try:
            target = check_url(current, https_only=https_only, ports=ports)
        except UnsafeURL as exc:
            if current == url:
                raise
            raise UnsafeURL(REDIRECTED_AWAY.format(target=current[:200], reason=exc.error)) from None
        remaining = max(deadline - time.monotonic(), 0.1)
        response = _exchange(
            target,
            method,
            headers=headers or {},
            body=body,
            remaining=remaining,
            max_bytes=max_bytes,
            timeout=timeout,
        )
        location = response.headers.get("location")
        redirect = response.status in (301, 302, 303, 307, 308) and location
        if not redirect or (method != "GET" and response.status not in (307, 308)):
            return response
        current = urljoin(target.url, location)
    raise FetchFailed(TOO_MANY_REDIRECTS.format(limit=max_redirects))


def _exchange(
    target: Target,
    method: str,
    *,
    headers: dict[str, str],
    body: bytes | None,
    remaining: float,
    max_bytes: int,
    timeout: float,
) -> Response:
    pool = _pool(target, urllib3.Timeout(connect=min(5.0, remaining), read=remaining))
    started = time.monotonic()
    try:
        raw: Any = pool.urlopen(
            method,
            target.path,
            body=body,
            headers={"Host": target.host_header, "User-Agent": "AgentKey/1.0", **headers},
            redirect=False,
            preload_content=False,
            assert_same_host=False,
        )
        chunks, size = [], 0
        for chunk in raw.stream(64 * 1024):
            size += len(chunk)
            if size > max_bytes:
                raise FetchFailed(TOO_LARGE.format(limit=max_bytes))
            if time.monotonic() - started > remaining:
                raise FetchFailed(TIMED_OUT.format(seconds=int(timeout)))
            chunks.append(chunk)
        raw.release_conn()
    except (urllib3.exceptions.TimeoutError, TimeoutError):
        raise FetchFailed(TIMED_OUT.format(seconds=int(timeout))) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = type(exc).__name__
        if isinstance(exc, urllib3.exceptions.SSLError):
            reason = "the TLS certificate did not verify"
        raise FetchFailed(UNREACHABLE.format(host=target.host, reason=reason)) from None
    finally:
        pool.close()
    return Response(
        status=int(raw.status),
        headers={k.lower(): v for k, v in raw.headers.items()},
        body=b"".join(chunks),
        url=target.url,
    )


# --- streaming mode --------------------------------------------------------------------------------

#: Content codings the streaming mode can decode (urllib3 without optional extras).
DECODABLE = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})


@dataclass
class Streamed:
    """An upstream response whose body has not been read yet. Always ``close()`` it."""

    status: int
    #: (lower-cased name, value) pairs in the order received, repeated names kept.
    headers: list[tuple[str, str]]
    host: str
    read_timeout: float
    _raw: Any = field(repr=False)
    _pool: urllib3.HTTPConnectionPool = field(repr=False)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def chunks(self, size: int = 64 * 1024) -> Iterator[bytes]:
        """The body, decoded from gzip/deflate; raises FetchFailed if the upstream stalls or drops."""
        try:
            yield from self._raw.stream(size, decode_content=True)
        except (urllib3.exceptions.TimeoutError, TimeoutError):
            raise FetchFailed(TIMED_OUT.format(seconds=int(self.read_timeout))) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise FetchFailed(UNREACHABLE.format(host=self.host, reason=type(exc).__name__)) from None

    def close(self) -> None:
        try:
            self._raw.release_conn()
        finally:
            self._pool.close()


def open_stream(
    method: str,
    target: Target,
    *,
    path: str,
    headers: dict[str, str],
    body: bytes | None,
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
) -> Streamed:
    """Send one request for ``path`` to the address ``target`` was checked at; return once the
    response headers have arrived. Never follows a redirect: a 3xx is returned as it is.

    ``target`` must come from :func:`check_url` just before (the address is pinned, TLS
    verifies ``target.host``); ``path`` must start with ``/`` and is sent verbatim, so it
    cannot change the host. Raises FetchFailed when the connection fails or times out.
    """
    if not path.startswith("/") or not path.isascii() or any(ord(c) <= 32 or ord(c) == 127 for c in path):
        raise UnsafeURL(BAD_URL.format(url=path[:200]))
    pool = _pool(target, urllib3.Timeout(connect=connect_timeout, read=read_timeout))
    try:
        raw: Any = pool.urlopen(
            method,
            path,
            body=body,
            headers={"Host": target.host_header, "User-Agent": "AgentKey/1.0", **headers},
            redirect=False,
            preload_content=False,
            decode_content=True,
            assert_same_host=False,
            retries=False,
        )
    except urllib3.exceptions.NewConnectionError:
        # Refused or no route: a subclass of ConnectTimeoutError in urllib3 2, but not a timeout.
        pool.close()
        raise FetchFailed(UNREACHABLE.format(host=target.host, reason="the connection was refused")) from None
    except (urllib3.exceptions.TimeoutError, TimeoutError):
        pool.close()
        raise FetchFailed(TIMED_OUT.format(seconds=int(read_timeout))) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        pool.close()
        reason = type(exc).__name__
        if isinstance(exc, urllib3.exceptions.SSLError):
            reason = "the TLS certificate did not verify"
        raise FetchFailed(UNREACHABLE.format(host=target.host, reason=reason)) from None
    return Streamed(
        status=int(raw.status),
        headers=[(k.lower(), v) for k, v in raw.headers.items()],
        host=target.host,
        read_timeout=read_timeout,
        _raw=raw,
        _pool=pool,
    )
