"""API keys: issued once, stored as SHA-256 digests, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from flask import g, request
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from service.errors import Unauthorized
from service.models import ApiKey, Tenant, utcnow

KEY_PREFIX = "lks"


@dataclass(frozen=True)
class IssuedKey:
    key: str  # shown once, never stored
    prefix: str


def _digest(key: str) -> str:
    # Keys are 256-bit random secrets, so a fast digest is enough; no password hashing needed.
    return hashlib.sha256(key.encode()).hexdigest()


def issue_key(session: Session, tenant: Tenant) -> IssuedKey:
    prefix = secrets.token_hex(6)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(tenant_id=tenant.id, prefix=prefix, key_hash=_digest(key)))
    return IssuedKey(key=key, prefix=prefix)


def revoke_key(session: Session, prefix: str) -> bool:
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None:
        return False
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return True


def api_key_for(session: Session, key: str) -> ApiKey | None:
    """The live (not revoked) key row of ``key``, with its tenant loaded."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    row = session.scalar(select(ApiKey).options(joinedload(ApiKey.tenant)).where(ApiKey.prefix == parts[1]))
    # Compare digests even for an unknown prefix so timing says nothing about which keys exist.
    expected = row.key_hash if row is not None else "0" * 64
    if not hmac.compare_digest(expected, _digest(key)) or row is None or row.revoked_at is not None:
        return None
    return row


def tenant_for_key(session: Session, key: str) -> Tenant | None:
    row = api_key_for(session, key)
    return row.tenant if row is not None else None


def tenant_for_key_id(session: Session, key_id: uuid.UUID) -> Tenant | None:
    """The tenant of a key already checked once (a signed-in session holds its id), or None
    once the key is revoked."""
    row = session.scalar(select(ApiKey).options(joinedload(ApiKey.tenant)).where(ApiKey.id == key_id))
    if row is None or row.revoked_at is not None:
        return None
    return row.tenant


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def require_tenant() -> Tenant:
    """The tenant of the request's bearer key, or 401."""
    from service.db import session_scope

    token = bearer_token()
    if token is None:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    with session_scope() as session:
        tenant = tenant_for_key(session, token)
        if tenant is None:
            raise Unauthorized("invalid or revoked API key")
        session.expunge(tenant)
    g.tenant = tenant
    return tenant
