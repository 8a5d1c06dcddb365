"""Webhook signatures: HMAC-SHA256 over ``<timestamp>.<body>``, checked against replay by the timestamp.

Headers sent with every webhook::

    X-Fansipan-Timestamp: 1764230400              (Unix seconds, when it was signed)
    X-Fansipan-Signature: sha256=<hex digest>     (HMAC-SHA256, key = the shared secret)
    X-Fansipan-Delivery: <uuid>                   (the same on a retry: receivers drop duplicates by it)

A receiver recomputes the digest over the exact bytes received, compares in
constant time, and refuses a timestamp older (or newer) than a few minutes, so a
captured request cannot be replayed later.  :func:`verify` does all three.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TOLERANCE_S = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, now_s: float | None = None,
           tolerance_s: float = TOLERANCE_S) -> None:
    """Raise ValueError saying why a webhook must be refused; return None if it is genuine and fresh."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        raise ValueError(f"timestamp {timestamp!r} is not Unix seconds") from None
    now = time.time() if now_s is None else now_s
    if abs(now - ts) > tolerance_s:
        raise ValueError(f"timestamp is {now - ts:.0f} s away from now (more than {tolerance_s:g} s): replay or clock skew")
    if not hmac.compare_digest(sign(secret, ts, body), signature or ""):
        raise ValueError("signature does not match the body (wrong secret, or the body was altered)")
