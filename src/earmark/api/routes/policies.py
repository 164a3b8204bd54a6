# SPDX-License-Identifier: Apache-2.0
"""``/v1/policies``: versioned owner policies and their dry run over recent scans."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from earmark.api import problems
from earmark.api.deps import Caller, Ctx, Id, require
from earmark.moderation.policy import PLATFORM, PolicyBody
from earmark.service.access import Forbidden, Principal
from earmark.service.policies import (
    PolicyOut,
    SimulationOut,
    get_policy,
    list_policies,
    save_policy,
    simulate,
)

router = APIRouter(prefix="/v1/policies", tags=["policies"],
                   responses=problems.responses(401, 403))
OwnerPath = Annotated[str, "owner"]


def _may_write(who: Principal, owner: str) -> None:
    if who.role == "admin" or (who.role == "owner" and who.owner == owner != PLATFORM):
        return
    raise Forbidden(f"only owner {owner!r} or an admin changes this policy")


@router.get("", response_model=list[PolicyOut])
def policies(ctx: Ctx, who: Annotated[Principal, Depends(require("owner"))]) -> list[PolicyOut]:
    """The current version of every owner's policy (owners see theirs and the platform's)."""
    rows = list_policies(ctx.db)
    if who.role == "owner":
        rows = [p for p in rows if p.owner in (who.owner, PLATFORM)]
    return rows


@router.get("/{owner}", response_model=list[PolicyOut])
def policy_versions(ctx: Ctx, who: Caller, owner: str) -> list[PolicyOut]:
    """Every version of one owner's policy, oldest first."""
    if not (who.at_least("moderator") or who.owner == owner or owner == PLATFORM):
        raise Forbidden(f"the policy of {owner!r} is its owner's")
    return list_policies(ctx.db, owner=owner)


@router.get("/{owner}/{version}", response_model=PolicyOut, responses=problems.responses(404))
def policy_version(ctx: Ctx, who: Caller, owner: str, version: Id) -> PolicyOut:
    if not (who.at_least("moderator") or who.owner == owner or owner == PLATFORM):
        raise Forbidden(f"the policy of {owner!r} is its owner's")
    return get_policy(ctx.db, owner=owner, version=version)


@router.post("/{owner}", status_code=201, response_model=PolicyOut)
def new_policy_version(ctx: Ctx, who: Caller, owner: str, body: PolicyBody) -> PolicyOut:
    """Save the owner's next policy version; it decides every scan from now on."""
    _may_write(who, owner)
    return save_policy(ctx.db, owner=owner, body=body, actor=who.id)


@router.post("/{owner}/simulate", response_model=SimulationOut)
def simulate_policy(ctx: Ctx, who: Caller, owner: str, body: PolicyBody,
                    last: Annotated[int, Query(ge=1, le=100_000)] = 1000) -> SimulationOut:
    """Replay a draft over the last ``last`` scans; nothing is saved."""
    _may_write(who, owner)
    return simulate(ctx.db, owner=owner, body=body, last=last)
