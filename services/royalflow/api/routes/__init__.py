"""HTTP routes of the balances API, one module per audience: owners, audit, admin, probes."""

from __future__ import annotations

from typing import Any

from royalflow.api.models import Error

# Documented on every authenticated route so the OpenAPI document lists them.
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "Missing, malformed, unknown or revoked bearer token."},
    403: {"model": Error, "description": "Valid token without the right to this resource."},
}
