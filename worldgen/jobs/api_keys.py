"""API keys: made by `worldgen keys create`, shown once, stored only as their SHA-256.

A key is `wg_` + 40 random URL-safe characters (240 bits), so a plain SHA-256 is enough (no
salt or slow hash is needed for a random secret of that size), and lookups are by that hash.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from worldgen.errors import WorldgenError
from worldgen.jobs.ids import new_id
from worldgen.jobs.store import JobStore, utcnow
from worldgen.jobs.tables import ApiKeyRow

KEY_PREFIX = "wg_"


class KeyNotFound(WorldgenError):
    code = "not_found"


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    admin: bool
    created_at: datetime
    revoked_at: datetime | None
    webhook_url: str | None = None
    """Where the worlds of this key send webhooks when a request names none."""

    @classmethod
    def from_row(cls, row: ApiKeyRow) -> ApiKey:
        return cls(row.id, row.name, row.prefix, row.admin, row.created_at, row.revoked_at, row.webhook_url)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(store: JobStore, name: str, admin: bool = False, webhook_url: str | None = None) -> tuple[ApiKey, str]:
    """A new key; returns (its record, the key itself — shown this once, never stored). With a
    default `webhook_url` the key gets its own webhook signing secret (`webhook_secret`)."""
    if not name.strip() or len(name) > 100:
        raise WorldgenError("a key needs a name of 1-100 characters", code="invalid_request")
    key = KEY_PREFIX + secrets.token_urlsafe(30)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode() if webhook_url else None
    row = ApiKeyRow(id=new_id(), name=name.strip(), prefix=key[:10], sha256=digest(key), admin=admin,
                    created_at=utcnow(), revoked_at=None, webhook_url=webhook_url, webhook_secret=secret)  # fmt: skip
    with store._session() as session:
        session.add(row)
        record = ApiKey.from_row(row)
    return record, key


def list_keys(store: JobStore) -> list[ApiKey]:
    with store._session() as session:
        return [ApiKey.from_row(r) for r in session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at))]


def revoke_key(store: JobStore, id_or_name: str) -> ApiKey:
    """Revoke by id or by name (a name must be unambiguous among active keys)."""
    keys = [k for k in list_keys(store) if k.id == id_or_name or (k.name == id_or_name and k.revoked_at is None)]
    if len(keys) != 1:
        found = "no" if not keys else f"{len(keys)}"
        raise KeyNotFound(f"{found} active key with id or name {id_or_name!r}")
    with store._session() as session:
        session.execute(update(ApiKeyRow).where(ApiKeyRow.id == keys[0].id).values(revoked_at=utcnow()))
    return next(k for k in list_keys(store) if k.id == keys[0].id)


def key_for(store: JobStore, key: str) -> ApiKey | None:
    """The active key record for a presented key, else None."""
    if not key.startswith(KEY_PREFIX) or len(key) > 100:
        return None
    with store._session() as session:
        row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.sha256 == digest(key)))
        return ApiKey.from_row(row) if row is not None and row.revoked_at is None else None


def webhook_secret(store: JobStore, key_id: str | None) -> str | None:
    """The key's own webhook signing secret, if it has one (else the server's is used)."""
    if key_id is None:
        return None
    with store._session() as session:
        row = session.get(ApiKeyRow, key_id)
        return row.webhook_secret if row is not None else None
