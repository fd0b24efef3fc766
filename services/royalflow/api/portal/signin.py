"""Sign-in and sign-out: the API token is exchanged (POST form) for a session cookie; logout
ends the session. Both forms are CSRF-protected."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials

from royalflow.api.auth import authenticate
from royalflow.api.portal import sessions
from royalflow.api.portal.pages import render

SIGNIN_CSRF_SECONDS = 3600  # the sign-in form stays usable this long
STATIC_MAX_AGE_SECONDS = 3600

router = APIRouter(prefix="/portal", include_in_schema=False)


def _signin_form(request: Request, message: str | None = None, status_code: int = 200) -> Response:
    # Double-submit: the same random value in an HttpOnly SameSite=Strict cookie and in the form.
    # A cross-site page can neither read the cookie nor make the browser send it.
    csrf = secrets.token_urlsafe(sessions.CSRF_BYTES)
    response = render(request, "signin.html", {"session": None, "csrf": csrf, "message": message}, status_code)
    sessions.set_cookie(response, request, sessions.SIGNIN_CSRF_COOKIE, csrf, SIGNIN_CSRF_SECONDS)
    return response


@router.get("/signin")
async def signin_page(request: Request) -> Response:
    return _signin_form(request)


@router.post("/signin")
async def signin(request: Request) -> Response:
    fields = await sessions.form(request)
    sessions.check_csrf(request.cookies.get(sessions.SIGNIN_CSRF_COOKIE, ""), fields.get("csrf"))
    token = fields.get("token", "").strip()
    try:
        who = await authenticate(request, HTTPAuthorizationCredentials(scheme="Bearer", credentials=token) if token else None)
    except HTTPException as refused:
        # The same wording for malformed, unknown and revoked tokens: the page tells nothing more.
        return _signin_form(request, "That token is unknown, revoked or malformed.", refused.status_code)
    lifetime = request.app.state.settings.portal_session_seconds
    session_id, _ = await sessions.start(request, who, lifetime)
    target = "/portal/admin" if who.is_admin else f"/portal/owners/{who.owner_id}"
    response = RedirectResponse(target, status.HTTP_303_SEE_OTHER)
    sessions.set_cookie(response, request, sessions.SESSION_COOKIE, session_id, lifetime)
    sessions.clear_cookie(response, request, sessions.SIGNIN_CSRF_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session (CSRF-protected: a cross-site form cannot sign anyone out)."""
    session = await sessions.current(request)
    sessions.check_csrf(session.csrf, (await sessions.form(request)).get("csrf"))
    await sessions.end(request)
    response = RedirectResponse(sessions.SIGNIN_PATH, status.HTTP_303_SEE_OTHER)
    sessions.clear_cookie(response, request, sessions.SESSION_COOKIE)
    return response


@router.get("/static/portal.css")
async def stylesheet() -> Response:
    from importlib.resources import files

    css = files("royalflow.api.portal").joinpath("static/portal.css").read_text()
    return Response(css, media_type="text/css", headers={"Cache-Control": f"public, max-age={STATIC_MAX_AGE_SECONDS}"})
