"""API keys: create (the secret is shown once), list, revoke. Admin only.

A key may carry a scope (api.scope): ``agency:<id>``, ``district:<id>`` or ``commune:<id>``.
The scoped shapes extend api.models' key models here; ``scope`` is left out of an answer for a
province-wide key, so clients written before scopes see the same objects as before.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import ConfigDict, Field, model_serializer

from .. import models
from ..deps import Admin, KeysDep, NowDep, RegistryDep
from ..errors import ApiError, not_found, responses
from ..keys import ApiKey, KeyRefused
from ..scope import SCOPE_HELP, ScopeError, check

_SCOPE_DOC = f"what the key sees: {SCOPE_HELP}. Absent: province-wide"


class KeyCreateIn(models.KeyCreateIn):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "grafana", "role": "viewer"}, {"name": "so-tnmt-portal", "role": "viewer", "scope": "agency:so_tnmt"}]})
    scope: str | None = Field(default=None, max_length=100, description=_SCOPE_DOC, examples=["agency:so_tnmt"])


class KeyOut(models.KeyOut):
    scope: str | None = Field(default=None, description=_SCOPE_DOC)

    @classmethod
    def of(cls, k: ApiKey) -> KeyOut:
        return cls(**models.KeyOut.of(k).model_dump(), scope=k.scope)

    @model_serializer(mode="wrap")
    def _omit_province_wide(self, handler):
        out = handler(self)
        if out.get("scope") is None:
            out.pop("scope", None)
        return out


class KeyCreated(KeyOut):
    model_config = models.KeyCreated.model_config
    key: str = Field(description="the secret key: shown this once, store it now")


router = APIRouter(prefix="/api/v1/keys", tags=["keys"], responses=responses(400, 401, 403, 422))


@router.post("", response_model=KeyCreated, status_code=201, summary="Create a key / Tạo khóa API",
             description="The response holds the secret key: it is shown this once and stored only as a SHA-256 "
                         "hash. Roles: viewer reads; operator also acknowledges, assigns, resolves and comments; "
                         "admin also manages keys. `scope` limits what the key sees (see docs/shared-data.md): "
                         "`agency:<id>`, `district:<id>` or `commune:<id>`; an admin key is always province-wide.")
def create_key(key: Admin, keys: KeysDep, registry: RegistryDep, body: KeyCreateIn, now: NowDep) -> KeyCreated:
    try:
        scope = check(registry, body.scope)
    except ScopeError as exc:
        raise ApiError(400, "bad_parameter", str(exc), {"parameter": "scope"}) from None
    try:
        created, token = keys.create(body.name, body.role, now, scope=scope)
    except KeyRefused as exc:
        param = "scope" if "scope" in str(exc) else "name"
        raise ApiError(400, "bad_parameter", str(exc), {"parameter": param}) from None
    return KeyCreated(**KeyOut.of(created).model_dump(), key=token)


@router.get("", response_model=list[KeyOut], summary="List keys / Danh sách khóa API",
            description="Every key, active and revoked, without secrets or hashes.")
def list_keys(key: Admin, keys: KeysDep) -> list[KeyOut]:
    return [KeyOut.of(k) for k in keys.list()]


@router.delete("/{key_id}", response_model=KeyOut, responses=responses(404, 409),
               summary="Revoke a key / Thu hồi khóa API",
               description="The key stops working at once. 409 if it was already revoked.")
def revoke_key(key: Admin, keys: KeysDep, key_id: Annotated[int, Path(ge=1, le=2**53)], now: NowDep) -> KeyOut:
    if keys.get(key_id) is None:
        raise not_found("key", key_id, "see GET /api/v1/keys for the keys' ids")
    try:
        return KeyOut.of(keys.revoke(key_id, now))
    except KeyRefused as exc:
        raise ApiError(409, "conflict", f"{exc}: nothing to do", {"key": key_id}) from None
