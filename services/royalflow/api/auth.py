"""Bearer tokens: random, shown once, stored as SHA-256. An owner token reads only its owner's
data; an admin token reads everything and may close periods and run reconciliation.

401 (with ``WWW-Authenticate: Bearer``) when the token is missing, malformed, unknown or
revoked; 403 when a valid token asks for something its role or owner may not see.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import asyncpg
from fastapi import HTTPException, Request, status

TOKEN_PREFIX = "rf_"
TOKEN_BYTES = 32


@dataclass(frozen=True)
class Principal:
    token_id: int
    role: str  # owner | admin
    owner_id: str | None

    def require_owner(self, owner_id: str) -> None:
        if self.role != "admin" and self.owner_id != owner_id:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this token may only read its own owner's data")

    def require_admin(self) -> None:
        if self.role != "admin":
            raise HTTPException(status.HTTP_403_FORBIDDEN, "admin token required")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(pool: asyncpg.Pool, *, role: str, owner_id: str | None = None, label: str = "") -> tuple[int, str]:
    """Create a token; returns (token id, token). The token itself is never stored."""
    if role not in ("owner", "admin") or (role == "owner") != (owner_id is not None):
        raise ValueError("an owner token needs an owner id; an admin token has none")
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    token_id = await pool.fetchval(
        "INSERT INTO api_tokens (token_hash, role, owner_id, label) VALUES ($1, $2, $3, $4) RETURNING token_id",
        token_hash(token), role, owner_id, label,
    )
    return int(token_id), token


async def revoke_token(pool: asyncpg.Pool, token_id: int) -> bool:
    result = await pool.execute("UPDATE api_tokens SET revoked_at = now() WHERE token_id = $1 AND revoked_at IS NULL", token_id)
    return result.endswith(" 1")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


async def authenticate(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        raise _unauthorized("missing or malformed bearer token")
    # Lookup by hash: the comparison happens inside the unique index, never on the secret.
    row = await request.app.state.pool.fetchrow(
        "SELECT token_id, role, owner_id, revoked_at FROM api_tokens WHERE token_hash = $1", token_hash(token)
    )
    if row is None or row["revoked_at"] is not None:
        raise _unauthorized("unknown or revoked token")
    return Principal(row["token_id"], row["role"], row["owner_id"])
