"""The measurements: HTTP(S), DNS and TCP connect, each bounded by a timeout, never raising.

Each function returns the profile's fields for what it measured, and a short
reason when the check failed (for the operator's log).  ICMP echo needs raw
sockets (root or CAP_NET_RAW); a TCP connect to a port the target serves answers
the same question, "can this commune reach it", without privileges, so it is
the reachability check.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time

import httpx

from .config import DnsCheck, HttpCheck, TcpCheck


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 1)


def _why(exc: BaseException) -> str:
    if isinstance(exc, (asyncio.TimeoutError, httpx.TimeoutException)):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError) or "refused" in str(exc).lower():
        return "connection refused"
    if isinstance(exc, httpx.ConnectError) and "SSL" not in str(exc) and "CERTIFICATE" not in str(exc):
        return f"could not connect (refused, unreachable or no route): {exc}"
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError)) or "CERTIFICATE" in str(exc):
        return f"TLS error: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def check_http(client: httpx.AsyncClient, check: HttpCheck, timeout_s: float) -> tuple[dict, str | None]:
    """http_up, http_status and (when a response came) http_latency_ms, time to the end of the body."""
    limit = check.max_body_kb * 1024

    async def fetch() -> int:
        async with client.stream(check.method, check.url, follow_redirects=check.follow_redirects) as resp:
            got = 0
            async for chunk in resp.aiter_raw():
                got += len(chunk)
                if got >= limit:  # enough to know it serves; a huge page must not stall the round
                    break
            return resp.status_code

    t0 = time.perf_counter()
    try:
        status = await asyncio.wait_for(fetch(), timeout_s)
    except Exception as exc:  # noqa: BLE001 - every failure is a measurement, not a crash
        return {"http_up": 0, "http_status": 0}, f"HTTP {check.method} {check.url}: {_why(exc)}"
    ms = _ms(t0)
    up = check.is_up(status)
    why = None if up else f"HTTP {check.method} {check.url}: status {status} is not an expected status"
    return {"http_up": int(up), "http_status": status, "http_latency_ms": ms}, why


async def check_dns(check: DnsCheck, timeout_s: float) -> tuple[dict, str | None]:
    """dns_ok and (on success) dns_ms, through the system resolver (what the probe's machine uses)."""
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(check.name, None, type=socket.SOCK_STREAM), timeout_s)
    except Exception as exc:  # noqa: BLE001
        return {"dns_ok": 0}, f"DNS {check.name}: {_why(exc)}"
    if not infos:
        return {"dns_ok": 0}, f"DNS {check.name}: no address"
    return {"dns_ok": 1, "dns_ms": _ms(t0)}, None


async def check_tcp(check: TcpCheck, timeout_s: float) -> tuple[dict, str | None]:
    """tcp_ok and (on success) tcp_ms: the time to open a connection (name resolution included)."""
    t0 = time.perf_counter()
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(check.host, check.port), timeout_s)
    except Exception as exc:  # noqa: BLE001
        return {"tcp_ok": 0}, f"TCP {check.host}:{check.port}: {_why(exc)}"
    ms = _ms(t0)
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    except Exception:  # noqa: BLE001 - the measurement is done; a slow close is not a failure
        pass
    return {"tcp_ok": 1, "tcp_ms": ms}, None
