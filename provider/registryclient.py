"""A minimal registry HTTP client for ``verify``: the standard library's http.client and ssl.

Enough of the Docker Registry HTTP API V2 auth flow to prove credentials the way a container
runtime uses them: ``GET /v2/``, its ``WWW-Authenticate`` challenge (``Bearer realm=...,
service=...`` or ``Basic``), a token request for ``repository:<repo>:pull``, then the
repository. Proxies follow Go's rules (the runtime is written in Go): ``HTTPS_PROXY`` for https,
``HTTP_PROXY`` for http, ``NO_PROXY`` exceptions, never for localhost or loopback addresses.
A CA file adds to the system's trust. Errors are ``RegistryError`` with a ``kind`` saying
where it failed (``tls``, ``connect``, ``dns``, ``timeout``, ``proxy``, ``protocol``);
nothing here ever puts a credential into a message.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import re
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import NamedTuple
from urllib.parse import SplitResult, unquote, urlencode, urljoin, urlsplit

__all__ = [
    "Challenge",
    "Client",
    "RegistryError",
    "Response",
    "basic_authorization",
    "parse_challenges",
    "proxy_for",
]

MAX_BODY_BYTES = 1024 * 1024
MAX_REDIRECTS = 3
REQUEST_TIMEOUT_SECONDS = 10.0
USER_AGENT = "registry-credential-provider-verify"


class RegistryError(Exception):
    """A request did not get an HTTP answer; ``kind`` says why, ``str()`` is one line."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Response(NamedTuple):
    url: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        lowered = name.lower()
        return [value for key, value in self.headers if key.lower() == lowered]


class Challenge(NamedTuple):
    """One ``WWW-Authenticate`` challenge: ``scheme`` lower-cased, auth-params by lower-cased name."""

    scheme: str
    params: dict[str, str]

    def describe(self) -> str:
        shown = ",".join(f'{key}="{value}"' for key, value in self.params.items())
        return f"{self.scheme.capitalize()} {shown}".strip()


_TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM = re.compile(rf"\s*({_TCHAR})\s*=\s*(?:\"((?:[^\"\\]|\\.)*)\"|({_TCHAR}))\s*(?:,|$)")
_SCHEME = re.compile(rf"\s*({_TCHAR})(?:\s+|\s*,|$)")


def parse_challenges(values: list[str]) -> list[Challenge]:
    """RFC 7235 challenges from ``WWW-Authenticate`` headers (several may share one header)."""
    challenges: list[Challenge] = []
    for value in values:
        rest = value.strip()
        while rest:
            scheme = _SCHEME.match(rest)
            if scheme is None:
                break
            rest = rest[scheme.end() :]
            params: dict[str, str] = {}
            while True:
                param = _PARAM.match(rest)
                if param is None:
                    break
                quoted, bare = param.group(2), param.group(3)
                params[param.group(1).lower()] = (
                    re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
                )
                rest = rest[param.end() :]
            challenges.append(Challenge(scheme=scheme.group(1).lower(), params=params))
            rest = rest.lstrip(", ")
    return challenges


def basic_authorization(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _in_network(host: str, network: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


def _no_proxy_matches(entry: str, host: str, port: str) -> bool:
    """One ``NO_PROXY`` entry, as Go's httpproxy reads it: ``*``, a CIDR, ``host[:port]``,
    ``.domain`` (subdomains only) or ``domain`` (it and its subdomains)."""
    entry = entry.strip().lower()
    if not entry:
        return False
    if entry == "*":
        return True
    if "/" in entry:
        return _in_network(host, entry)
    entry_host, entry_port = entry, ""
    split = re.fullmatch(r"(.*):(\d+)", entry)
    if split is not None and not entry.endswith("]") and entry.count(":") == 1:
        entry_host, entry_port = split.group(1), split.group(2)
    if entry_port and entry_port != port:
        return False
    host = host.lower()
    if entry_host.startswith("*."):
        entry_host = entry_host[1:]
    if entry_host.startswith("."):
        return host.endswith(entry_host)
    return host == entry_host or host.endswith("." + entry_host)


def _env(environ: Mapping[str, str], name: str) -> str:
    return environ.get(name) or environ.get(name.lower()) or ""


def proxy_for(url: str, environ: Mapping[str, str]) -> str | None:
    """The proxy URL Go's ``http.ProxyFromEnvironment`` would use for ``url``, or None."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if _is_loopback(host):
        return None
    port = str(parts.port or (443 if parts.scheme == "https" else 80))
    for entry in _env(environ, "NO_PROXY").split(","):
        if _no_proxy_matches(entry, host, port):
            return None
    proxy = _env(environ, "HTTPS_PROXY") if parts.scheme == "https" else _env(environ, "HTTP_PROXY")
    if not proxy:
        return None
    return proxy if "://" in proxy else "http://" + proxy


def redact_url(url: str) -> str:
    """``url`` without its userinfo (proxy URLs may hold a password)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


class Client:
    """One registry conversation. ``remaining()`` gives the seconds left of the caller's deadline."""

    def __init__(
        self,
        *,
        environ: Mapping[str, str],
        remaining: Callable[[], float],
        ca_file: str | None = None,
        tls_hint: str = "pass --ca-file with the CA that signed it",
    ) -> None:
        self.environ = environ
        self.tls_hint = tls_hint
        self.remaining = remaining
        self.context = ssl.create_default_context()
        if ca_file is not None:
            try:
                self.context.load_verify_locations(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise RegistryError("tls", f"cannot load CA file {ca_file}: {exc}") from None
        self.proxies_used: list[str] = []

    def get(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        method: str = "GET",
        body: bytes | None = None,
    ) -> Response:
        """``method url`` (with ``body``), following up to three redirects (Authorization only
        to the same host; a request with a body is never redirected)."""
        current = url
        sent = dict(headers or {})
        for _ in range(MAX_REDIRECTS + 1):
            response = self._once(method, current, sent, body)
            if body is not None:
                return response
            location = response.header("Location")
            if response.status not in (301, 302, 303, 307, 308) or not location:
                return response
            target = urljoin(current, location)
            if urlsplit(target).netloc != urlsplit(current).netloc:
                sent.pop("Authorization", None)
            current = target
        raise RegistryError("protocol", f"more than {MAX_REDIRECTS} redirects from {url}")

    def _timeout(self) -> float:
        left = self.remaining()
        if left <= 0:
            raise RegistryError("timeout", "the command's deadline passed (see --timeout)")
        return min(REQUEST_TIMEOUT_SECONDS, left)

    def _connection(
        self, parts: SplitResult, timeout: float
    ) -> tuple[http.client.HTTPConnection, dict[str, str] | None]:
        """A connection for the URL's scheme and host, through a proxy where one applies; for
        plain http through a proxy, the headers for the proxy (requests then carry the full URL)."""
        host = parts.hostname or ""
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        url = parts.geturl()
        proxy = proxy_for(url, self.environ)
        if proxy is None:
            if https:
                return http.client.HTTPSConnection(host, port, timeout=timeout, context=self.context), None
            return http.client.HTTPConnection(host, port, timeout=timeout), None
        proxy_parts = urlsplit(proxy)
        if proxy_parts.scheme not in ("http", ""):
            raise RegistryError("proxy", f"proxy {redact_url(proxy)}: only http:// proxies are supported")
        self.proxies_used.append(redact_url(proxy))
        proxy_headers = {}
        if proxy_parts.username is not None:
            proxy_headers["Proxy-Authorization"] = basic_authorization(
                unquote(proxy_parts.username), unquote(proxy_parts.password or "")
            )
        proxy_host, proxy_port = proxy_parts.hostname or "", proxy_parts.port or 80
        if https:
            connection = http.client.HTTPSConnection(
                proxy_host, proxy_port, timeout=timeout, context=self.context
            )
            connection.set_tunnel(host, port, headers=proxy_headers)
            return connection, None
        return http.client.HTTPConnection(proxy_host, proxy_port, timeout=timeout), proxy_headers

    def _once(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None = None) -> Response:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RegistryError("protocol", f"not an http(s) URL: {url}")
        from provider.wallclock import within

        timeout = self._timeout()
        connection, proxy_headers = self._connection(parts, timeout)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        sent = {"User-Agent": USER_AGENT, **headers}
        if proxy_headers is not None:
            target, sent = url, {**sent, **proxy_headers}

        def exchange() -> Response:
            connection.request(method, target, body=body, headers=sent)
            reply = connection.getresponse()
            data = b"" if method == "HEAD" else reply.read(MAX_BODY_BYTES)
            return Response(url=url, status=reply.status, headers=reply.getheaders(), body=data)

        try:
            # The connection's timeout is per read: an answer trickling in would never trip it.
            return within(
                timeout,
                exchange,
                lambda: RegistryError(
                    "timeout", f"{parts.netloc} did not answer in full within {round(timeout, 1):g}s"
                ),
            )
        except ssl.SSLCertVerificationError as exc:
            raise RegistryError(
                "tls",
                f"the certificate of {parts.netloc} is not trusted ({exc.verify_message}); {self.tls_hint}",
            ) from None
        except ssl.SSLError as exc:
            reason = exc.reason or str(exc)
            hint = ""
            if reason in (
                "WRONG_VERSION_NUMBER",
                "RECORD_LAYER_FAILURE",
                "HTTP_REQUEST",
                "UNEXPECTED_EOF_WHILE_READING",
            ):
                hint = "; does it speak plain http? (then pass --plain-http)"
            raise RegistryError("tls", f"handshake with {parts.netloc} failed: {reason}{hint}") from None
        except socket.gaierror as exc:
            raise RegistryError("dns", f"cannot resolve {parts.hostname}: {exc.strerror}") from None
        except TimeoutError:
            raise RegistryError("timeout", f"{parts.netloc} did not answer in time") from None
        except ConnectionRefusedError:
            raise RegistryError("connect", f"connection to {parts.netloc} refused") from None
        except OSError as exc:
            if "Tunnel connection failed" in str(exc):
                raise RegistryError(
                    "proxy", f"the proxy refused the tunnel to {parts.netloc}: {exc}"
                ) from None
            raise RegistryError("connect", f"cannot reach {parts.netloc}: {exc.strerror or exc}") from None
        except http.client.HTTPException as exc:
            raise RegistryError(
                "protocol", f"{parts.netloc} broke the HTTP exchange: {type(exc).__name__}"
            ) from None
        finally:
            connection.close()


def token_url(challenge: Challenge, scope: str) -> str:
    """The token endpoint URL for a Bearer challenge and a scope."""
    realm = challenge.params.get("realm", "")
    query = {"scope": scope}
    if challenge.params.get("service"):
        query = {"service": challenge.params["service"], "scope": scope}
    separator = "&" if "?" in realm else "?"
    return realm + separator + urlencode(query)
