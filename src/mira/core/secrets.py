"""Keep credentials out of everything mira writes or prints.

A teacher URL may carry credentials (``https://user:pass@host/v1``) or a query string that holds
a key (``?api-key=...``); a server may echo the Authorization header back in an error body. The
URL shown to users and stored in ``config.yaml`` is :func:`redact_url`'s form, and every string
that comes back from a server goes through :class:`Redactor` before it reaches a result, a log
line, the cache or a file.
"""

from __future__ import annotations

import base64
import logging
import weakref
from urllib.parse import SplitResult, parse_qsl, quote, quote_plus, unquote, urlsplit, urlunsplit

MASK = "[redacted]"
# Shorter strings (a one-letter password) would blank out ordinary words of an error message;
# such a secret is not worth protecting by mangling the text.
MIN_SECRET_CHARS = 4
MIN_QUERY_SECRET_CHARS = 8


def redact_url(url: str | None) -> str | None:
    """`url` without user/password and with every query value masked (keys kept for the reader)."""
    if not url:
        return url
    parts = urlsplit(url)
    host = _host(parts)
    if parts.username is not None or parts.password is not None:
        host = f"{MASK}@{host}"
    query = "&".join(f"{k}={MASK}" for k, _ in parse_qsl(parts.query, keep_blank_values=True)) if parts.query else ""
    return urlunsplit((parts.scheme, host if parts.netloc else parts.netloc, parts.path, query, ""))


def _host(parts: SplitResult) -> str:
    """host[:port] without user info (IPv6 literals keep their brackets)."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port is not None else host


def endpoint_url(base_url: str, path: str) -> str:
    """`base_url` + "/" + `path`, keeping its query string (``.../v1?api-version=x`` stays valid)."""
    parts = urlsplit(base_url)
    joined = parts.path.rstrip("/") + "/" + path.lstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, joined, parts.query, ""))


def split_credentials(url: str) -> tuple[str, str | None]:
    """(`url` without ``user:pass@``, the Basic Authorization header value they stand for, or None)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = _host(parts)
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    basic = "Basic " + base64.b64encode(pair.encode()).decode()
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), basic


def url_secrets(url: str | None) -> list[str]:
    """The secret pieces of a URL: password, user name and query values."""
    if not url:
        return []
    parts = urlsplit(url)
    found = [parts.password or "", parts.username or "", unquote(parts.password or "")]
    _, basic = split_credentials(url)
    found.append(basic.removeprefix("Basic ") if basic else "")
    # Short query values ("?v=2") are usually not secrets, and masking them would mangle ordinary
    # text of answers; they still never reach config.yaml or the displayed URL.
    found += [v for _, v in parse_qsl(parts.query, keep_blank_values=True) if len(v) >= MIN_QUERY_SECRET_CHARS]
    return found


class Redactor:
    """Replaces every known secret in a string with ``[redacted]``."""

    def __init__(self, secrets: list[str | None]) -> None:
        # A server may echo a secret URL-encoded; longest first, so a key that contains another
        # secret is masked whole.
        forms = {f for s in secrets if s and len(s) >= MIN_SECRET_CHARS for f in (s, quote(s, safe=""), quote_plus(s))}
        self.secrets = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str | None) -> str | None:
        if not isinstance(text, str) or not text or not self.secrets:
            return text
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


class _RedactingFilter(logging.Filter):
    """httpx logs every request URL at INFO (``mira -v``): query values must not reach the log."""

    def __init__(self) -> None:
        super().__init__()
        self.redactors: weakref.WeakSet[Redactor] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        redactors = list(self.redactors)
        if redactors:
            message = original = record.getMessage()
            for redact in redactors:
                message = redact(message) or ""
            if message != original:
                record.msg, record.args = message, None
        return True


_LOG_FILTER = _RedactingFilter()


def protect_logs(redactor: Redactor) -> None:
    """Mask `redactor`'s secrets in the HTTP library's own log lines while it is alive."""
    if not redactor.secrets:
        return
    _LOG_FILTER.redactors.add(redactor)
    logger = logging.getLogger("httpx")
    if _LOG_FILTER not in logger.filters:
        logger.addFilter(_LOG_FILTER)
