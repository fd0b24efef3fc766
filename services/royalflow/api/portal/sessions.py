"""Portal sessions: an API token exchanged for a server-side session behind an HttpOnly cookie.

* The session id is 256 random bits, fresh at every sign-in (an id the browser brought along is
  ended, never reused: no session fixation); PostgreSQL keeps only its SHA-256.
* A session is valid while it has not ended (logout), not expired (``portal_session_seconds``,
  absolute) and its token is not revoked: every request joins ``api_tokens``, so revoking a
  token ends its sessions at once.
* Every state-changing form carries the session's synchronizer CSRF token; the sign-in form,
  which has no session yet, a double-submit token (a cookie and the same value in the form).
* Anything wrong with the cookie (missing, malformed, unknown, ended, expired, revoked) sends the
  browser to the sign-in page (303), never an error page.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs

from fastapi import HTTPException, Request, Response, status

from royalflow.api.auth import Principal

SESSION_COOKIE = "rf_session"
SIGNIN_CSRF_COOKIE = "rf_signin_csrf"
SESSION_ID_BYTES = 32  # 256 random bits, like the tokens
CSRF_BYTES = 32
# token_urlsafe(32): 43 characters of [A-Za-z0-9_-]; anything else is not one of ours.
RANDOM_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")
SIGNIN_PATH = "/portal/signin"
MAX_FORM_FIELDS = 8  # the largest portal form has three fields

_LOOKUP = """
SELECT s.csrf_token, t.token_id, t.role, t.owner_id
FROM portal_sessions s JOIN api_tokens t USING (token_id)
WHERE s.session_hash = $1 AND s.ended_at IS NULL AND s.expires_at > now() AND t.revoked_at IS NULL
"""


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str
    session_hash: str


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def is_tls(request: Request) -> bool:
    """Served over TLS: uvicorn with a certificate, or behind a proxy with --proxy-headers."""
    return request.url.scheme == "https"


def sign_in_required() -> HTTPException:
    return HTTPException(status.HTTP_303_SEE_OTHER, "sign in", headers={"Location": SIGNIN_PATH})


async def start(request: Request, principal: Principal, lifetime_seconds: int) -> tuple[str, str]:
    """A new session for ``principal``: (session id for the cookie, its CSRF token). The session
    the browser brought along, if any, is ended first."""
    await end(request)
    session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
    csrf = secrets.token_urlsafe(CSRF_BYTES)
    await request.app.state.pool.execute(
        "INSERT INTO portal_sessions (session_hash, token_id, csrf_token, expires_at) "
        "VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
        _hash(session_id), principal.token_id, csrf, float(lifetime_seconds),
    )
    # Expired and ended sessions are only dead weight: trim a few on every sign-in.
    await request.app.state.pool.execute(
        "DELETE FROM portal_sessions WHERE session_hash IN (SELECT session_hash FROM portal_sessions "
        "WHERE expires_at < now() - interval '1 day' OR ended_at < now() - interval '1 day' LIMIT 100)"
    )
    return session_id, csrf


async def current(request: Request) -> Session:
    """The valid session of this request, or a 303 to the sign-in page."""
    session_id = request.cookies.get(SESSION_COOKIE, "")
    if not RANDOM_PATTERN.match(session_id):
        raise sign_in_required()
    row = await request.app.state.pool.fetchrow(_LOOKUP, _hash(session_id))
    if row is None:
        raise sign_in_required()
    return Session(Principal(row["token_id"], row["role"], row["owner_id"]), row["csrf_token"], _hash(session_id))


async def end(request: Request) -> None:
    session_id = request.cookies.get(SESSION_COOKIE, "")
    if RANDOM_PATTERN.match(session_id):
        await request.app.state.pool.execute(
            "UPDATE portal_sessions SET ended_at = now() WHERE session_hash = $1 AND ended_at IS NULL", _hash(session_id)
        )


def set_cookie(response: Response, request: Request, name: str, value: str, max_age_seconds: int) -> None:
    response.set_cookie(name, value, max_age=max_age_seconds, path="/portal", httponly=True,
                        samesite="strict", secure=is_tls(request))


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path="/portal", httponly=True, samesite="strict", secure=is_tls(request))


async def form(request: Request) -> dict[str, str]:
    """A url-encoded form, one value per field (the app's middleware bounds the body at 64 KiB).
    Any other body reads as an empty form, so it fails the CSRF check like a forged one (403)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return {}
    try:
        fields = parse_qs((await request.body()).decode(), max_num_fields=MAX_FORM_FIELDS, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "malformed form") from None
    return {k: v[0] for k, v in fields.items()}


def check_csrf(expected: str, given: str | None) -> None:
    """403 unless the form's token equals the expected one (compared in constant time)."""
    if not given or not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token: reload the page and try again")
