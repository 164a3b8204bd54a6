# SPDX-License-Identifier: Apache-2.0
"""Who may do what: API keys with roles, and the people who sign in to the review pages.

Roles, from least to most power:

- ``uploader`` submits scans and sees (and disputes) its own;
- ``owner`` manages the references and the policy of its ``owner`` name and answers the
  disputes of its claims;
- ``moderator`` sees every scan and decides reviews;
- ``admin`` does everything, including keys, users and webhooks.

A key is ``em_<id>_<secret>``: the id is public (it names the key in the audit log), the
secret is 256 random bits and only its SHA-256 is stored. Passwords are hashed with scrypt
(``hashlib.scrypt``, n=2^14, r=8, p=1) with a random salt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import select

from earmark.errors import EarmarkError
from earmark.moderation import audit
from earmark.store.db import Database
from earmark.store.models import ApiKey, User, utcnow
from earmark.utc import UtcDatetime

Role = Literal["uploader", "owner", "moderator", "admin"]
ROLES: tuple[Role, ...] = ("uploader", "owner", "moderator", "admin")


class AuthError(EarmarkError):
    code = "unauthorized"


class Forbidden(EarmarkError):
    code = "forbidden"


class KeyNotFound(EarmarkError):
    code = "key_not_found"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: ``key:<id>`` or ``user:<name>``."""

    id: str
    role: Role
    owner: str | None = None

    def at_least(self, role: Role) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def owns_a_match(self, evidence: Mapping[str, Any] | None) -> bool:
        """An owner key whose owner is the owner of a match in ``evidence`` (JSON)."""
        matches = ((evidence or {}).get("identification") or {}).get("matches") or []
        return self.role == "owner" and any(m.get("owner") == self.owner for m in matches)


class KeyOut(BaseModel):
    id: str
    name: str
    role: Role
    owner: str | None
    created_at: UtcDatetime
    revoked: bool


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(db: Database, *, name: str, role: Role, owner: str | None = None,
               actor: str = "cli") -> tuple[KeyOut, str]:
    """Make a key; returns it with the full key string, which is shown only this once."""
    if role not in ROLES:
        raise EarmarkError(f"role must be one of {', '.join(ROLES)}")
    if role == "owner" and not owner:
        raise EarmarkError("an owner key needs --owner NAME (the owner it acts for)")
    kid = secrets.token_hex(6)
    secret = f"em_{kid}_{secrets.token_urlsafe(32)}"
    with db.session() as s:
        k = ApiKey(id=kid, name=name, role=role, owner=owner, key_hash=_digest(secret))
        s.add(k)
        audit.append(s, actor=actor, action="key.create", subject=f"key:{kid}",
                     data={"name": name, "role": role, "owner": owner})
        s.flush()
        out = _key_out(k)
    return out, secret


def _key_out(k: ApiKey) -> KeyOut:
    return KeyOut(id=k.id, name=k.name, role=k.role, owner=k.owner,  # type: ignore[arg-type]
                  created_at=k.created_at, revoked=k.revoked_at is not None)


def list_keys(db: Database) -> list[KeyOut]:
    with db.reader() as s:
        return [_key_out(k) for k in s.scalars(select(ApiKey).order_by(ApiKey.created_at))]


def revoke_key(db: Database, key_id: str, *, actor: str) -> KeyOut:
    with db.session() as s:
        k = s.get(ApiKey, key_id)
        if k is None:
            raise KeyNotFound(f"no key {key_id!r} (see GET /v1/keys or `earmark keys list`)")
        if k.revoked_at is None:
            k.revoked_at = utcnow()
            audit.append(s, actor=actor, action="key.revoke", subject=f"key:{key_id}")
        return _key_out(k)


def authenticate(db: Database, presented: str) -> Principal:
    """The principal of an API key; :class:`AuthError` for an unknown or revoked one."""
    parts = presented.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != "em":
        raise AuthError("malformed API key (expected em_<id>_<secret>)")
    with db.reader() as s:
        k = s.get(ApiKey, parts[1])
    if k is None or not hmac.compare_digest(k.key_hash, _digest(presented.strip())):
        raise AuthError("unknown API key")
    if k.revoked_at is not None:
        raise AuthError("this API key was revoked")
    return Principal(id=f"key:{k.id}", role=k.role, owner=k.owner)  # type: ignore[arg-type]


# -- people ---------------------------------------------------------------------------------
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    dk = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(dk).decode()


def check_password(password: str, stored: str) -> bool:
    try:
        _, salt_b64, dk_b64 = stored.split("$")
        dk = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt_b64), n=_N, r=_R,
                            p=_P, dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(dk, base64.b64decode(dk_b64))


_DUMMY = hash_password("not a password of anyone")


def add_user(db: Database, *, name: str, password: str, role: Role,
             owner: str | None = None, actor: str = "cli") -> None:
    """Create or reset a person's login."""
    if len(password) < 10:
        raise EarmarkError("a password needs at least 10 characters")
    if role not in ROLES:
        raise EarmarkError(f"role must be one of {', '.join(ROLES)}")
    with db.session() as s:
        u = s.get(User, name)
        if u is None:
            s.add(User(name=name, role=role, owner=owner, password_hash=hash_password(password)))
        else:
            u.role, u.owner, u.password_hash = role, owner, hash_password(password)
        audit.append(s, actor=actor, action="user.set", subject=f"user:{name}",
                     data={"role": role, "owner": owner})


def login(db: Database, name: str, password: str) -> Principal:
    with db.reader() as s:
        u = s.get(User, name)
    if u is None:
        check_password(password, _DUMMY)  # the same work: timing does not reveal names
        raise AuthError("wrong name or password")
    if not check_password(password, u.password_hash):
        raise AuthError("wrong name or password")
    return Principal(id=f"user:{u.name}", role=u.role, owner=u.owner)  # type: ignore[arg-type]
