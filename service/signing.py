"""Signed, expiring download URLs of single stored files (for servers that fetch them).

A URL carries ``expires`` (Unix seconds) and ``signature``, the HMAC-SHA256 of the file
name and the expiry under the signing key: it opens that one file until then, unlike the
internal bearer key, which opens every tenant's files. The key is
INTERNAL_URL_SIGNING_KEY, or else derived from INTERNAL_API_KEY (so a deployment that
sets only that gets signed URLs too); without either, nothing is signed or accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote, urlencode

DEFAULT_TTL = 3600
_DERIVATION_LABEL = b"lakesync internal URL signing v1"


def signing_key(config) -> bytes | None:
    explicit = config.get("INTERNAL_URL_SIGNING_KEY") or ""
    if explicit:
        return explicit.encode()
    base = config.get("INTERNAL_API_KEY") or ""
    if not base:
        return None
    # A derived key, not the bearer key itself: a leaked signature says nothing about it.
    return hmac.new(base.encode(), _DERIVATION_LABEL, hashlib.sha256).digest()


def signature(key: bytes, file_name: str, expires: int) -> str:
    message = f"{file_name}\n{int(expires)}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign(config, file_name: str, *, now: float | None = None) -> dict[str, str]:
    """The query parameters that open ``file_name`` for INTERNAL_URL_TTL seconds ({} without a key)."""
    key = signing_key(config)
    if key is None:
        return {}
    ttl = int(config.get("INTERNAL_URL_TTL") or DEFAULT_TTL)
    expires = int(now if now is not None else time.time()) + ttl
    return {"expires": str(expires), "signature": signature(key, file_name, expires)}


def verify(config, file_name: str, expires: str | None, given: str | None, *, now: float | None = None) -> bool:
    """Whether ``expires``/``given`` are a valid, unexpired signature of ``file_name``."""
    key = signing_key(config)
    # Query values are any text: only ASCII digits make an expiry, and the signature is
    # compared as bytes (compare_digest refuses non-ASCII strings).
    if key is None or not expires or not given or not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
        return False
    if int(expires) < (now if now is not None else time.time()):
        return False
    expected = signature(key, file_name, int(expires)).encode()
    return hmac.compare_digest(expected, given.encode("utf-8", "surrogatepass"))


def signing_settings(config) -> dict:
    """The settings signing needs, for a component that keeps them (e.g. a target)."""
    keys = ("INTERNAL_URL_SIGNING_KEY", "INTERNAL_API_KEY", "INTERNAL_URL_TTL")
    return {key: config.get(key) for key in keys}


def storage_url(base_url: str, file_name: str, config) -> str:
    """The URL of a stored file under ``base_url``, signed when ``config`` has a key."""
    url = f"{base_url.rstrip('/')}/internal/storage/datasets/{quote(file_name)}"
    query = sign(config, file_name)
    return f"{url}?{urlencode(query)}" if query else url
