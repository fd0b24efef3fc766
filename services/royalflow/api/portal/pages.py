"""Rendering: one Jinja2 environment (autoescape on for every template), the security headers
of every portal response, and error pages in HTML instead of the API's JSON."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from royalflow.money import currency_for

PREFIX = "/portal"

# Nothing but our own stylesheet, inline SVG and the generation's picture (a data: URI of a PNG
# we re-encoded); no script at all, no frames, forms post only to us.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate CSP 2
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",  # pages carry money and CSRF tokens: never kept in a cache
    "Cross-Origin-Opener-Policy": "same-origin",
}


def money(units: int, currency: str) -> str:
    """Exact decimal text of integer units, e.g. 12500000 USD -> '0.012500000' (the API's
    ``Amount.decimal``: the currency's own rendering without its code)."""
    return currency_for(currency).format(units).rsplit(" ", 1)[0]


ENV = Environment(
    loader=PackageLoader("royalflow.api.portal", "templates"),
    autoescape=True,  # every template, whatever its name: owner ids, prompts, family names are data
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["money"] = money


def render(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    html = ENV.get_template(template).render(request_path=request.url.path, **context)
    return HTMLResponse(html, status_code=status_code)


def is_portal(request: Request) -> bool:
    return request.url.path == PREFIX or request.url.path.startswith(PREFIX + "/")


_HEADERS = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]


class SecurityHeaders:
    """Pure ASGI middleware (no per-request task, unlike ``@app.middleware``): adds the headers
    above to every response under /portal that does not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *((k, v) for k, v in _HEADERS if k not in present)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def error_page(request: Request, exc: HTTPException) -> Response:
    """A portal error as a page: 303 to sign-in stays a redirect; 403/404/... explain themselves."""
    if exc.status_code in (301, 302, 303, 307) and exc.headers and "Location" in exc.headers:
        return RedirectResponse(exc.headers["Location"], status_code=303)
    titles = {400: "Bad request", 403: "Not yours to see", 404: "Not found"}
    return render(request, "error.html", {"title": titles.get(exc.status_code, "Refused"), "detail": str(exc.detail),
                                          "session": None}, exc.status_code)
