"""Redis ledger URLs: every part checked, unknown options refused.

``redis://[[user]:password@]host[:port][/db][?option=value...]``   (``valkey://`` too)
``rediss://...``                                                  TLS
``unix:///path/to/redis.sock[?db=N]``                             a local socket
``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db][?...]``
                                    ask Sentinel where the master of ``service`` is
                                    (``rediss+sentinel://`` for TLS to the master too)

Options: ``prefix`` (key prefix), ``timeout`` and ``connect_timeout`` (seconds),
``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile`` (files), ``ssl_check_hostname``
(true/false), ``sentinel_username`` and ``sentinel_password`` (credentials for the
sentinels; the URL's own credentials are the master's).
"""

from __future__ import annotations

import math
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from model_boss.errors import InvalidLeaseRequest
from model_boss.leases._url import redact_url

__all__ = ["RedisURL", "parse_redis_url"]

OPTIONS = frozenset(
    {
        "prefix",
        "timeout",
        "connect_timeout",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
        "sentinel_username",
        "sentinel_password",
        "db",
    }
)
SCHEMES = {
    "redis": ("redis", False, False),
    "valkey": ("redis", False, False),
    "rediss": ("redis", True, False),
    "valkeys": ("redis", True, False),
    "unix": ("unix", False, False),
    "redis+sentinel": ("redis", False, True),
    "valkey+sentinel": ("redis", False, True),
    "rediss+sentinel": ("redis", True, True),
    "valkeys+sentinel": ("redis", True, True),
}


@dataclass(frozen=True, slots=True)
class RedisURL:
    hosts: tuple[tuple[str, int], ...]  # the server, or the sentinels
    path: str | None = None  # unix socket
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    check_hostname: bool = True
    service: str | None = None  # Sentinel's name for the master
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    prefix: str | None = None
    timeout_s: float | None = None
    connect_timeout_s: float | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file is not None:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidLeaseRequest(f"cannot use the Redis TLS files: {exc}") from exc
        context.check_hostname = self.check_hostname
        return context


def _bad(url: str, why: str) -> InvalidLeaseRequest:
    return InvalidLeaseRequest(f"bad Redis ledger URL {redact_url(url)!r}: {why}")


def _int(url: str, text: str, what: str, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise _bad(url, f"{what} must be an integer in [{low}, {high}], got {text!r}")
    return int(text)


def _seconds(url: str, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _bad(url, f"{what} must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= 3600:
        raise _bad(url, f"{what} must be in (0, 3600] s, got {text!r}")
    return value


def _host_port(url: str, item: str, default_port: int) -> tuple[str, int]:
    if item.startswith("["):  # [::1]:6379
        host, _, rest = item[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
    port = _int(url, port_text, "the port", 1, 65535) if port_text else default_port
    return host or "127.0.0.1", port


def parse_redis_url(url: str) -> RedisURL:
    """Parse and check ``url``; raises InvalidLeaseRequest naming what is wrong."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise _bad(url, f"unknown scheme {parts.scheme!r}")
    kind, tls, sentinel = SCHEMES[scheme]
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(query) - OPTIONS)
    if unknown:
        raise _bad(
            url, f"unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(OPTIONS))})"
        )
    one = {k: v[-1] for k, v in query.items()}
    netloc = parts.netloc
    creds, _, hostlist = netloc.rpartition("@")
    username = password = None
    if creds:
        user, colon, pw = creds.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    path = parts.path
    db_text = one.get("db", "")
    service = None
    if kind == "unix":
        if not path:
            raise _bad(url, "a unix socket URL needs a path")
        hosts: tuple[tuple[str, int], ...] = ()
        socket_path: str | None = path
    else:
        socket_path = None
        default_port = 26379 if sentinel else 6379
        items = [h for h in hostlist.split(",") if h] or ["127.0.0.1"]
        if len(items) > 1 and not sentinel:
            raise _bad(url, "several hosts are only allowed with redis+sentinel://")
        hosts = tuple(_host_port(url, item, default_port) for item in items)
        segments = [s for s in path.split("/") if s]
        if sentinel:
            if not segments:
                raise _bad(url, "a Sentinel URL needs the master's name: .../<service>[/db]")
            service = unquote(segments.pop(0))
        if len(segments) > 1:
            raise _bad(url, f"unexpected path {path!r}")
        if segments:
            db_text = segments[0]
    check = one.get("ssl_check_hostname", "true").lower()
    if check not in ("true", "false", "1", "0", "yes", "no"):
        raise _bad(url, f"ssl_check_hostname must be true or false, got {check!r}")
    tls_files = [one.get(k) for k in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")]
    if any(tls_files) and not tls:
        raise _bad(url, "TLS options need a rediss:// (or rediss+sentinel://) URL")
    if one.get("ssl_keyfile") and not one.get("ssl_certfile"):
        raise _bad(url, "ssl_keyfile needs ssl_certfile")
    return RedisURL(
        hosts=hosts,
        path=socket_path,
        db=_int(url, db_text, "the database index", 0, 1_000_000) if db_text else 0,
        username=username,
        password=password,
        tls=tls,
        ca_file=one.get("ssl_ca_certs") or None,
        cert_file=one.get("ssl_certfile") or None,
        key_file=one.get("ssl_keyfile") or None,
        check_hostname=check in ("true", "1", "yes"),
        service=service,
        sentinel_username=one.get("sentinel_username") or None,
        sentinel_password=one.get("sentinel_password") or None,
        prefix=one.get("prefix") or None,
        timeout_s=_seconds(url, one["timeout"], "timeout") if "timeout" in one else None,
        connect_timeout_s=(
            _seconds(url, one["connect_timeout"], "connect_timeout")
            if "connect_timeout" in one
            else None
        ),
    )
