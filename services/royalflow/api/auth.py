"""Bearer tokens: random, shown once, stored as SHA-256. An owner token reads only its owner's
data; an admin token reads everything and may close periods and run reconciliation.

401 (with ``WWW-Authenticate: Bearer``) when the token is missing, malformed, unknown or
revoked; 403 when a valid token asks for something its role or owner may not see.

Why a plain SHA-256 and no password hash: a token carries 256 random bits, so brute-forcing
the hash is hopeless and a slow KDF would only slow every request. Why lookup by hash: the
secret is never compared byte by byte in Python, so there is no timing side channel on it;
PostgreSQL's unique index compares hashes, which reveal nothing about the token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

TOKEN_PREFIX = "rf_"
TOKEN_BYTES = 32  # 256 random bits
PUBLIC_PREFIX_CHARS = len(TOKEN_PREFIX) + 8  # shown in listings and accepted by revoke
MIN_REVOKE_PREFIX_CHARS = len(TOKEN_PREFIX) + 4
# token_urlsafe(32) gives 43 characters of [A-Za-z0-9_-]; anything else is malformed.
TOKEN_PATTERN = re.compile(r"^rf_[A-Za-z0-9_-]{43}$")

# auto_error=False: we raise our own 401 (with WWW-Authenticate) for every failure mode; the
# scheme object is here so the OpenAPI document declares bearer auth and /docs can send it.
bearer = HTTPBearer(auto_error=False, description="`royalflow api token create --owner ID | --admin`")


@dataclass(frozen=True)
class Principal:
    token_id: int
    role: str  # owner | admin
    owner_id: str | None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def require_owner(self, owner_id: str) -> None:
        if not self.is_admin and self.owner_id != owner_id:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this token may only read its own owner's data")

    def require_admin(self) -> None:
        if not self.is_admin:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "admin token required")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(pool: asyncpg.Pool, *, role: str, owner_id: str | None = None, label: str = "") -> tuple[int, str]:
    """Create a token; returns (token id, token). The token itself is never stored."""
    if role not in ("owner", "admin") or (role == "owner") != (owner_id is not None):
        raise ValueError("an owner token needs an owner id; an admin token has none")
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    token_id = await pool.fetchval(
        "INSERT INTO api_tokens (token_hash, token_prefix, role, owner_id, label) VALUES ($1, $2, $3, $4, $5) "
        "RETURNING token_id",
        token_hash(token), token[:PUBLIC_PREFIX_CHARS], role, owner_id, label,
    )
    return int(token_id), token


async def revoke_token(pool: asyncpg.Pool, token_id: int) -> bool:
    result = await pool.execute("UPDATE api_tokens SET revoked_at = now() WHERE token_id = $1 AND revoked_at IS NULL", token_id)
    return result.endswith(" 1")


async def resolve_token_id(pool: asyncpg.Pool, prefix_or_id: str) -> int:
    """A token id from its id or a unique prefix of the token; ValueError names the problem."""
    if prefix_or_id.isdigit():
        return int(prefix_or_id)
    if not prefix_or_id.startswith(TOKEN_PREFIX) or len(prefix_or_id) < MIN_REVOKE_PREFIX_CHARS:
        raise ValueError(f"give a token id or at least {MIN_REVOKE_PREFIX_CHARS} leading characters of the token (rf_...)")
    # Only the stored public prefix is matched, never the secret part.
    rows = await pool.fetch(
        "SELECT token_id FROM api_tokens WHERE token_prefix <> '' AND starts_with(token_prefix, $1) LIMIT 2",
        prefix_or_id[:PUBLIC_PREFIX_CHARS],
    )
    if len(rows) != 1:
        raise ValueError(f"{'no' if not rows else 'more than one'} token matches {prefix_or_id!r}")
    return int(rows[0]["token_id"])


async def list_tokens(pool: asyncpg.Pool, *, limit: int = 1000) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT token_id, token_prefix, role, owner_id, label, created_at, revoked_at FROM api_tokens ORDER BY token_id LIMIT $1",
        limit,
    )
    return [dict(r) for r in rows]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


async def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    if credentials is None:
        raise _unauthorized("missing bearer token: send the header 'Authorization: Bearer rf_...'")
    if not TOKEN_PATTERN.match(credentials.credentials):
        raise _unauthorized("malformed bearer token")
    row = await request.app.state.pool.fetchrow(
        "SELECT token_id, role, owner_id, revoked_at FROM api_tokens WHERE token_hash = $1", token_hash(credentials.credentials)
    )
    if row is None or row["revoked_at"] is not None:
        raise _unauthorized("unknown or revoked token")
    return Principal(row["token_id"], row["role"], row["owner_id"])


async def authenticate_admin(who: Annotated[Principal, Depends(authenticate)]) -> Principal:
    """An admin principal, checked as a dependency: before the request body is validated, so an
    owner token learns nothing about an admin route's body (403, not 422)."""
    who.require_admin()
    return who
