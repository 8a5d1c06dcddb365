"""Who is calling: the API key from ``Authorization: Bearer <key>`` or ``X-API-Key``, and its role.

Keys travel in headers only, never in the query string: URLs end up in proxy
logs, browser history and Grafana's query inspector.  Every route but /health
depends on :func:`require` (``/status`` too, unless FANSIPAN_STATUS_PUBLIC=1).
What a key may *see* once admitted (its scope: an agency, a district, a commune) is api.scope's job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPBearer

from .errors import ApiError
from .keys import ROLES, ApiKey, role_allows

# Declared for the OpenAPI document (the "Authorize" button, the security schemes);
# the header parsing below is ours, so that a malformed header gets a message saying what is wrong.
bearer_scheme = HTTPBearer(auto_error=False, scheme_name="bearer",
                           description="`Authorization: Bearer <key>`; create keys with `fansipan keys create`")
header_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey",
                             description="`X-API-Key: <key>`, the same keys as the bearer scheme")

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="fansipan"'}


def _unauthorized(reason: str, message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"reason": reason}, _CHALLENGE)


def presented_key(request: Request) -> str | None:
    """The key in the request headers, or None; raises 401 for a malformed Authorization header."""
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("malformed_header", "Authorization header: expected 'Bearer <key>'; "
                                                    "or send the key alone in X-API-Key")
        return token.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def authenticate(request: Request) -> ApiKey:
    token = presented_key(request)
    if token is None:
        raise _unauthorized("missing_key", "this route needs an API key: send 'Authorization: Bearer <key>' or "
                                           "'X-API-Key: <key>' (an admin creates keys with 'fansipan keys create')")
    key = request.app.state.fansipan.keys.verify(token)
    if key is None:
        raise _unauthorized("invalid_key", "the API key is not one of ours: check for a copy/paste error, "
                                           "or ask an admin for a new one")
    if key.revoked:
        raise _unauthorized("revoked_key", f"the API key {key.prefix}… ({key.name!r}) was revoked: "
                                           "ask an admin for a new one")
    request.state.api_key = key  # for the request log / metrics
    return key


def require(role: str) -> Callable[..., ApiKey]:
    """A dependency that admits keys of ``role`` or above."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    def dependency(request: Request,
                   _bearer: Annotated[object, Depends(bearer_scheme)] = None,
                   _header: Annotated[object, Depends(header_scheme)] = None) -> ApiKey:
        key = authenticate(request)
        if not role_allows(key.role, role):
            raise ApiError(403, "forbidden", f"this needs a key with role {role} or above; yours "
                                             f"({key.prefix}…, {key.name!r}) is {key.role}: ask an admin",
                           {"needed_role": role, "key_role": key.role})
        return key

    dependency.__name__ = f"require_{role}"
    return dependency


def status_page_access(request: Request,
                       _bearer: Annotated[object, Depends(bearer_scheme)] = None,
                       _header: Annotated[object, Depends(header_scheme)] = None) -> ApiKey | None:
    """The status page: public only when FANSIPAN_STATUS_PUBLIC=1 (a wall screen), else a viewer key."""
    if request.app.state.fansipan.api.status_public:
        return None
    return require("viewer")(request)
