"""A ceiling on request bodies: 413 ``payload_too_large`` in the API's one error shape.

The largest legitimate body is a Grafana ``/query`` with a few dozen targets, a
few kilobytes; 1 MiB leaves room for any of them.  A declared
``Content-Length`` over the limit is refused before the app runs; a body
without one (chunked) is counted as it streams in and refused when it crosses
the limit, so a client cannot make the API buffer more than the limit either way.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException

from .errors import error_response

MAX_BODY_BYTES = 1 << 20


class BodyTooLarge(HTTPException):
    """Raised from ``receive``: FastAPI lets HTTPExceptions through, and errors.py gives it the one shape."""

    def __init__(self, limit: int):
        super().__init__(413, f"over the limit of {limit:,} bytes")


def too_large(limit: int):
    return error_response(413, "payload_too_large", f"body: over the limit of {limit:,} bytes: the API takes small "
                                                    "JSON documents; ask for less (fewer targets)",
                          {"parameter": "body", "limit_bytes": limit})


class BodyLimit:
    """ASGI middleware refusing request bodies over ``limit`` bytes."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await too_large(self.limit)(scope, receive, send)
        seen = 0

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, counting_receive, send)
