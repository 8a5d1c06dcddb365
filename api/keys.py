"""API keys: roles, hashed storage in the relational database, and the ``keys`` command.

A key is ``fsp_`` + 43 URL-safe characters: 32 random bytes from the OS's
CSPRNG (``secrets``).  It is shown once, when created; the database keeps only
its SHA-256 and a short prefix to recognise it in listings.

Why one SHA-256 and not bcrypt/argon2: slow hashes protect *low-entropy*
secrets (passwords people choose) against offline guessing after a database
leak.  A 256-bit random key cannot be guessed, slow or fast (2^256 tries), so
a slow hash would add nothing but 50-300 ms to *every* request.  The hash also
serves as the lookup key (a unique index), so verification is one indexed
SELECT and its timing says nothing usable about any stored key.

Keys live in a table of the incidents database (FANSIPAN_INCIDENTS_PATH): mutable
state is relational (DESIGN.md), and one file is one thing to back up.  SQL is
plain, so PostgreSQL can take over as for incidents.
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from storage.sqlite_schema import add_columns

from .scope import SCOPE_HELP, ScopeError
from .scope import parse as parse_scope

ROLES = ("viewer", "operator", "admin")  # each role can do everything the roles before it can
PREFIX = "fsp_"
SHOWN_PREFIX_LEN = len(PREFIX) + 8
TOUCH_EVERY_NS = 60 * 10**9  # last_used is written at most once a minute per key: no write per request

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_sha256 TEXT NOT NULL UNIQUE,
    created_ns BIGINT NOT NULL,
    last_used_ns BIGINT,
    revoked_ns BIGINT
);
"""
# Columns added after the first release: (name, SQL type); added to an older database when it is opened.
ADDED_COLUMNS = (("scope", "TEXT"),)  # NULL: province-wide; else agency:<id>, district:<id> or commune:<id>


def role_allows(have: str, need: str) -> bool:
    return ROLES.index(have) >= ROLES.index(need)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without its secret or hash (safe to show)."""

    id: int
    name: str
    role: str
    prefix: str
    created_ns: int
    last_used_ns: int | None
    revoked_ns: int | None
    scope: str | None = None  # None: province-wide; see api.scope

    @property
    def revoked(self) -> bool:
        return self.revoked_ns is not None


class KeyRefused(ValueError):
    """A key operation that cannot be done (unknown role, revoking a revoked key...)."""


_COLS = "id, name, role, prefix, created_ns, last_used_ns, revoked_ns, scope"


class KeyStore:
    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        add_columns(self._db, "api_keys", ADDED_COLUMNS)  # another process (API, CLI) may add them first
        self._touched: dict[int, int] = {}

    def close(self) -> None:
        self._db.close()

    def create(self, name: str, role: str, now_ns: int | None = None,
               scope: str | None = None) -> tuple[ApiKey, str]:
        """Store a new key; return it and the secret token (the only time the token exists in clear).

        ``scope`` is checked for its form only; that it names a real agency/district/commune is
        for the caller, who has the registry (api.scope.check).
        """
        name = name.strip()
        if role not in ROLES:
            raise KeyRefused(f"role {role!r} is not one of {', '.join(ROLES)}")
        try:
            parsed = parse_scope(scope)
        except ScopeError as exc:
            raise KeyRefused(str(exc)) from None
        if parsed is not None and role == "admin":
            raise KeyRefused(f"scope {scope!r}: an admin key manages every key, so it is province-wide; "
                             "give a scoped key the role viewer or operator")
        scope = None if parsed is None else str(parsed)
        if not name or len(name) > 100:
            raise KeyRefused("name: give 1 to 100 characters saying whose key it is (a person or a service)")
        token = PREFIX + secrets.token_urlsafe(32)
        now = time.time_ns() if now_ns is None else now_ns
        with self._lock:
            cur = self._db.execute("INSERT INTO api_keys (name, role, prefix, key_sha256, created_ns, scope) "
                                   "VALUES (?, ?, ?, ?, ?, ?)",
                                   (name, role, token[:SHOWN_PREFIX_LEN], digest(token), now, scope))
            key_id = cur.lastrowid
        return self.get(key_id), token

    def get(self, key_id: int) -> ApiKey | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return ApiKey(*row) if row else None

    def list(self) -> list[ApiKey]:
        with self._lock:
            return [ApiKey(*r) for r in self._db.execute(f"SELECT {_COLS} FROM api_keys ORDER BY id").fetchall()]

    def revoke(self, key_id: int, now_ns: int | None = None) -> ApiKey:
        now = time.time_ns() if now_ns is None else now_ns
        with self._lock:
            cur = self._db.execute("UPDATE api_keys SET revoked_ns = ? WHERE id = ? AND revoked_ns IS NULL",
                                   (now, key_id))
        if cur.rowcount != 1:
            raise KeyRefused(f"key {key_id} is already revoked, or does not exist")
        return self.get(key_id)

    def verify(self, token: str) -> ApiKey | None:
        """The key this token is (revoked or not: the caller decides), or None if it is no key of ours."""
        if not token.startswith(PREFIX) or len(token) > 200:
            return None
        with self._lock:
            row = self._db.execute(f"SELECT {_COLS} FROM api_keys WHERE key_sha256 = ?", (digest(token),)).fetchone()
        if row is None:
            return None
        key = ApiKey(*row)
        self._touch(key.id)
        return key

    def _touch(self, key_id: int) -> None:
        now = time.time_ns()
        if now - self._touched.get(key_id, 0) < TOUCH_EVERY_NS:
            return
        self._touched[key_id] = now
        try:
            with self._lock:
                self._db.execute("UPDATE api_keys SET last_used_ns = ? WHERE id = ?", (now, key_id))
        except sqlite3.OperationalError:  # a busy database must not fail the request; the next touch retries
            self._touched.pop(key_id, None)


# --- the `keys` command -------------------------------------------------------------------------


def _when(ns: int | None) -> str:
    return "-" if ns is None else datetime.fromtimestamp(ns / 1e9, timezone.utc).isoformat(timespec="seconds")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fansipan keys", description="Manage the API's keys (stored hashed in "
                                "FANSIPAN_INCIDENTS_PATH). A new key is printed once: store it at once.")
    sub = p.add_subparsers(dest="action", required=True)
    c = sub.add_parser("create", help="create a key and print it (once)")
    c.add_argument("--role", required=True, choices=ROLES, help="viewer reads; operator also acts on incidents; "
                                                                  "admin also manages keys")
    c.add_argument("--name", required=True, help="whose key: a person or a service (grafana, prometheus)")
    c.add_argument("--scope", default=None, help=f"what the key sees: {SCOPE_HELP}")
    sub.add_parser("list", help="list keys (never their secrets)")
    r = sub.add_parser("revoke", help="revoke a key by id")
    r.add_argument("id", type=int)
    return p


def _checked_scope(settings, scope: str | None) -> str | None:
    """The scope, checked against the registry of FANSIPAN_PROFILES_DIR (raises ScopeError)."""
    if scope is None:
        return None
    from device_profiles import ProfileError, load_registry

    from .scope import check

    try:
        registry = load_registry(settings.profiles_dir)
    except ProfileError as exc:
        raise ScopeError(f"cannot check scope {scope!r} against the registry in {settings.profiles_dir}: {exc}") from None
    return check(registry, scope)


def main(argv: list[str] | None = None, settings=None) -> int:
    """``python -m api keys create --role admin --name ops`` (wired as ``fansipan keys ...``)."""
    args = _parser().parse_args(argv)
    if settings is None:
        from fansipan.config import ConfigError, Settings

        try:
            settings = Settings.from_env()
        except ConfigError as exc:
            print(f"fansipan keys: {exc}", file=sys.stderr)
            return 2
    store = KeyStore(settings.incidents_path)
    try:
        if args.action == "create":
            scope = _checked_scope(settings, args.scope)
            key, token = store.create(args.name, args.role, scope=scope)
            print(token)
            print(f"created key {key.id} ({key.role}, {key.scope or 'province-wide'}) for {key.name!r} in "
                  f"{settings.incidents_path}; this is the only time it is shown", file=sys.stderr)
        elif args.action == "list":
            for k in store.list():
                state = f"revoked {_when(k.revoked_ns)}" if k.revoked else "active"
                print(f"{k.id}\t{k.role}\t{k.scope or 'province-wide'}\t{k.prefix}…\t{k.name}\t"
                      f"created {_when(k.created_ns)}\t"
                      f"last used {_when(k.last_used_ns)}\t{state}")
        else:
            k = store.revoke(args.id)
            print(f"revoked key {k.id} ({k.role}, {k.name!r})", file=sys.stderr)
    except (KeyRefused, ScopeError) as exc:
        print(f"fansipan keys: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0
