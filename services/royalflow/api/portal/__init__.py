"""The owner portal: server-rendered pages (Jinja2, SVG charts, no JavaScript) over the ledger,
served by the API process under /portal. ``install(app, settings)`` adds its routes."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from starlette.exceptions import HTTPException

from royalflow.config import Settings


def install(app: FastAPI, settings: Settings) -> None:
    from royalflow.api.portal import admin, owner, pages, signin
    from royalflow.api.portal.cache import TtlCache
    from royalflow.api.portal.data import DeadLetterCounts

    app.state.settings = settings
    app.state.portal_dead_letters = DeadLetterCounts()
    app.state.portal_cache = TtlCache(settings.portal_cache_seconds)
    app.add_middleware(pages.SecurityHeaders)

    @app.exception_handler(HTTPException)  # Starlette's: also the router's own 404 and 405
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if pages.is_portal(request):
            return pages.error_page(request, exc)
        return await http_exception_handler(request, exc)

    for module in (signin, owner, admin):
        app.include_router(module.router)
