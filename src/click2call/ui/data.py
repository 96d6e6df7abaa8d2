"""JSON the dashboard's pages read that the v1 API does not give: health with refusals, keys."""

from __future__ import annotations

from fastapi import APIRouter, Request

from click2call.api.access import in_store_thread, runtime_of
from click2call.errors import Forbidden, Unauthorized, UnknownTenant
from click2call.ui.session import Visitor, visitor

router = APIRouter(prefix="/ui/api")


async def _signed_in(request: Request) -> Visitor:
    who = await visitor(request)
    if who is None:
        raise Unauthorized("your session has ended: sign in again")
    return who


@router.get("/health")
async def health(request: Request) -> dict[str, object]:
    """The tenant's engine, its active calls, its webhooks, the latest refused requests."""
    who = await _signed_in(request)
    runtime = runtime_of(request)
    tenant = who.key.tenant
    engine = runtime.service.health().get(tenant)
    if engine is None:  # the key's tenant has left the configuration since
        raise UnknownTenant(tenant)
    refusals = await in_store_thread(
        request, runtime.keys.audit_entries, limit=20, tenant=tenant, refusals_only=True
    )
    webhooks = await in_store_thread(request, runtime.outbox.tenant_counts, tenant)
    return {
        "tenant": who.key.tenant,
        "engine": {"name": engine.name, "ok": engine.ok, "detail": engine.detail},
        "active_calls": engine.active_calls,
        "webhooks": webhooks,
        "refusals": [
            {"at": e.at.isoformat(), "endpoint": e.endpoint, "reason": e.reason} for e in refusals
        ],
    }


@router.get("/keys")
async def keys(request: Request) -> dict[str, object]:
    who = await _signed_in(request)
    if not who.key.admin:
        raise Forbidden("only admin keys (keys create --admin) may manage keys")
    listing = await in_store_thread(request, runtime_of(request).keys.listing, who.key.tenant)
    return {
        "keys": [
            {
                "id": k.id,
                "prefix": k.prefix,
                "label": k.label,
                "admin": k.admin,
                "created_at": k.created_at.isoformat(),
                "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
                "yours": k.id == who.key.id,
            }
            for k in listing
        ]
    }
