"""Server URLs as they may be recorded: without credentials.

A remote scorer's URL may carry secrets: ``http://user:token@proxy:8080`` (an authenticating proxy
in front of vLLM, as docs/remote.md suggests) or ``?api_key=...``. The scorer's `identity` goes
into every Decision (redacted ones too), and its errors and log lines into audit records, so only
`redact_url`'s form is ever recorded; the real URL stays inside the HTTP client.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["REDACTED", "redact_url", "scrub", "url_secrets"]

REDACTED = "REDACTED"
# A query parameter whose name contains one of these holds a secret.
_SECRET_PARTS = ("key", "token", "secret", "pass", "pwd", "sig", "auth", "credential", "session", "jwt", "code")
_MIN_SECRET = 4  # shorter values are too common to scrub from text safely


def _is_secret(name: str) -> bool:
    lowered = unquote(name).lower()
    return any(part in lowered for part in _SECRET_PARTS)


def _query_pairs(query: str) -> list[tuple[str, str | None]]:
    return [(k, v if sep else None) for k, sep, v in (p.partition("=") for p in query.split("&") if p)]


def redact_url(url: str) -> str:
    """`url` without its userinfo and with every secret-named query value replaced.

    Args:
        url: Any URL.

    Returns:
        ``scheme://host[:port]/path[?query]``: ``user:password@`` dropped, values of query
        parameters named like a key, token, secret, password, signature, ... set to REDACTED.
    """
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    query = "&".join(k if v is None else f"{k}={REDACTED if _is_secret(k) else v}"
                     for k, v in _query_pairs(parts.query))
    return urlunsplit((parts.scheme, host, parts.path, query, parts.fragment))


def url_secrets(url: str) -> list[str]:
    """The secrets `redact_url` removes (userinfo parts, secret query values), raw and unquoted."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    found = [userinfo, *userinfo.split(":", 1)] if userinfo else []
    found += [v for k, v in _query_pairs(parts.query) if v and _is_secret(k)]
    found += [unquote(s) for s in found]
    return sorted({s for s in found if len(s) >= _MIN_SECRET}, key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    """`text` with every secret (longest first) replaced by REDACTED: for messages that may quote
    a URL or header, such as a transport error's."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text
