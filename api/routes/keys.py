"""API keys: create (the secret is shown once), list, revoke. Admin only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from ..deps import Admin, KeysDep, NowDep
from ..errors import ApiError, not_found, responses
from ..keys import KeyRefused
from ..models import KeyCreated, KeyCreateIn, KeyOut

router = APIRouter(prefix="/api/v1/keys", tags=["keys"], responses=responses(400, 401, 403, 422))


@router.post("", response_model=KeyCreated, status_code=201, summary="Create a key / Tạo khóa API",
             description="The response holds the secret key: it is shown this once and stored only as a SHA-256 "
                         "hash. Roles: viewer reads; operator also acknowledges, assigns, resolves and comments; "
                         "admin also manages keys.")
def create_key(key: Admin, keys: KeysDep, body: KeyCreateIn, now: NowDep) -> KeyCreated:
    try:
        created, token = keys.create(body.name, body.role, now)
    except KeyRefused as exc:
        raise ApiError(400, "bad_parameter", str(exc), {"parameter": "name"}) from None
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
