"""The versioned JSON API: place calls, read their state and history, hang up."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from click2call.api import fields
from click2call.api.schemas import CallCreate, CallList, CallOut, EngineOut, HealthOut
from click2call.calls import Tech
from click2call.runtime import Runtime
from click2call.service import CallRequest

router = APIRouter(prefix="/api/v1", tags=["v1"])


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


@router.post("/calls", status_code=201, response_model=CallOut)
async def create_call(body: CallCreate, request: Request) -> CallOut:
    runtime = _runtime(request)
    call = await runtime.service.place(
        CallRequest(
            tenant=body.tenant or runtime.settings.compat_tenant.name,
            extension=body.extension,
            tech=Tech(body.tech) if body.tech else None,
            phone=body.phone,
            destination=body.destination,
            outboundcid=body.outboundcid,
            foreignid=body.foreignid,
        )
    )
    return CallOut.of(call)


@router.get("/calls/{key}", response_model=CallOut)
async def get_call(key: str, request: Request) -> CallOut:
    """A call by its integer id or its `epoch.seq` uniqueid, with its event history."""
    service = _runtime(request).service
    call = service.get(fields.name("id", key))
    return CallOut.of(call, service.history(call))


@router.get("/calls", response_model=CallList)
async def list_calls(
    request: Request,
    foreignid: Annotated[str | None, Query(max_length=64)] = None,
    tenant: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> CallList:
    """Newest first; filter by foreignid and tenant."""
    service = _runtime(request).service
    calls = service.find(
        tenant=fields.name("tenant", tenant) if tenant else None,
        foreignid=fields.foreignid(foreignid),
        limit=limit,
    )
    return CallList(calls=[CallOut.of(c) for c in calls])


@router.post("/calls/{key}/hangup", status_code=202, response_model=CallOut)
async def hangup_call(key: str, request: Request) -> CallOut:
    """Ask the engine to end the call; the result arrives as the call's next state."""
    call = await _runtime(request).service.hangup(fields.name("id", key))
    return CallOut.of(call)


@router.get("/health", response_model=HealthOut)
async def health(request: Request) -> JSONResponse:
    engines = _runtime(request).service.health()
    out = HealthOut(
        ok=all(h.ok for h in engines.values()),
        tenants={
            name: EngineOut(engine=h.name, ok=h.ok, detail=h.detail, active_calls=h.active_calls)
            for name, h in engines.items()
        },
    )
    return JSONResponse(out.model_dump(), status_code=200 if out.ok else 503)
