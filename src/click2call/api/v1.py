"""The versioned JSON API: place calls, read their state and history, hang up."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response

from click2call.api import fields
from click2call.api.access import (
    audited,
    identify,
    identify_before_body,
    identify_for_call,
    in_store_thread,
    readable_tenants,
    reads_store,
    runtime_of,
)
from click2call.api.schemas import (
    ERRORS,
    AttemptOut,
    CallCreate,
    CallOut,
    DatabaseOut,
    DeliveryList,
    DeliveryOut,
    EngineOut,
    EventList,
    EventOut,
    HealthOut,
    PeerOut,
    json_body,
    request_body,
)
from click2call.auth import claim
from click2call.calls import CallState, Tech
from click2call.errors import DatabaseUnavailable
from click2call.service import CallRequest
from click2call.store import Outbox

router = APIRouter(prefix="/api/v1", tags=["v1"])
CallRef = Annotated[str, Path(pattern=fields.NAME, description="Call id or uniqueid")]


@router.post(
    "/calls",
    status_code=201,
    response_model=CallOut,
    responses=ERRORS,
    openapi_extra=request_body(CallCreate),  # read by the endpoint, after the credentials
)
async def create_call(request: Request) -> Response:
    """Place a call. Authenticate with X-API-Key, a Bearer token, or key=."""
    with audited(request, "v1.calls") as decision:
        keyed = await identify_before_body(request)
        body = await json_body(request, CallCreate)
        if keyed is None:
            decision.identity = await identify(request, body.tenant)
        else:
            decision.identity = claim(keyed, body.tenant)
        decision.call = call = await runtime_of(request).service.place(
            _order(body, decision.identity.tenant)
        )
    # The bytes FastAPI writes for response_model=CallOut, without its per-request work
    # (the endpoint is called past the router: api/direct.py).
    reply = CallOut.of(call).model_dump_json(by_alias=True)
    return Response(reply, status_code=201, media_type="application/json")


def _order(body: CallCreate, tenant: str) -> CallRequest:
    return CallRequest(
        tenant=tenant,
        extension=body.extension,
        tech=Tech(body.tech) if body.tech else None,
        phone=body.phone,
        destination=body.destination,
        outboundcid=body.outboundcid,
        foreignid=body.foreignid,
        callback_url=body.callback_url,
    )


@router.get("/calls/{ref}", response_model=CallOut, responses=ERRORS)
async def get_call(ref: CallRef, request: Request) -> CallOut:
    """A call by its integer id or its `epoch.seq` uniqueid, with its event history."""
    with audited(request, "v1.get", refusals_only=True) as decision:
        decision.identity, call = await identify_for_call(request, fields.name("id", ref))
    return CallOut.of(
        call, await in_store_thread(request, runtime_of(request).service.history, call)
    )


@router.get("/calls/{ref}/events", response_model=EventList, responses=ERRORS)
async def call_events(ref: CallRef, request: Request) -> EventList:
    """The call's append-only history: one event per state change, numbered from 1."""
    with audited(request, "v1.events", refusals_only=True) as decision:
        decision.identity, call = await identify_for_call(request, fields.name("id", ref))
    events = await in_store_thread(request, runtime_of(request).service.history, call)
    return EventList(events=[EventOut.of(e) for e in events])


@router.get("/calls/{ref}/webhooks", response_model=DeliveryList, responses=ERRORS)
async def call_webhooks(ref: CallRef, request: Request) -> DeliveryList:
    """Every webhook delivery of the call's events: state, attempts, status codes, next try."""
    with audited(request, "v1.webhooks", refusals_only=True) as decision:
        decision.identity, call = await identify_for_call(request, fields.name("id", ref))
    return await in_store_thread(request, _deliveries, runtime_of(request).outbox, call.id)


def _deliveries(outbox: Outbox, call_id: int) -> DeliveryList:
    return DeliveryList(
        deliveries=[
            DeliveryOut(
                id=d.outbox_id,
                url=d.url,
                type=d.type,
                sequence=d.sequence,
                state=d.state,
                attempts=d.attempts,
                last_status=d.last_status,
                last_error=d.last_error,
                next_attempt_at=d.next_attempt_at,
                done_at=d.done_at,
                attempts_made=[
                    AttemptOut(at=a.at, status=a.status, error=a.error, seconds=a.seconds)
                    for a in outbox.attempts(d.outbox_id)
                ],
            )
            for d in outbox.for_call(call_id)
        ]
    )


@router.post(
    "/calls/{ref}/hangup",
    status_code=202,
    response_model=CallOut,
    responses={200: {"model": CallOut, "description": "The call had already ended"}, **ERRORS},
)
async def hangup_call(ref: CallRef, request: Request, response: Response) -> CallOut:
    """End the call: 202 while the engine ends it (the result arrives as the call's next
    state), 200 when it had already ended. Either way the call as GET shows it."""
    service = runtime_of(request).service
    with audited(request, "v1.hangup") as decision:
        decision.identity, decision.call = await identify_for_call(request, fields.name("id", ref))
        call = await service.hangup(decision.call.uniqueid, decision.identity.tenant)
    if call.state is CallState.ENDED:
        response.status_code = 200
    return CallOut.of(call, await in_store_thread(request, service.history, call))


@router.get(
    "/health",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "The database or an engine is down"}},
)
async def health(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    engines = runtime.service.health()
    # Anyone may ask whether the server is up; only who may read a tenant learns where its
    # PBX and trunk are and why something failed (the database's words name its host).
    # Side by side: a database that does not answer costs its timeout once.
    problem, readable = await asyncio.gather(runtime.database_problem(), _readable(request))
    out = HealthOut(
        ok=problem is None and all(h.ok for h in engines.values()),
        database=DatabaseOut(
            ok=problem is None,
            detail="ok" if problem is None else problem if readable else "unavailable",
        ),
        tenants={
            name: EngineOut(
                engine=h.name,
                ok=h.ok,
                detail=h.detail if name in readable else ("ok" if h.ok else "down"),
                active_calls=h.active_calls if name in readable else 0,
                peers=[PeerOut(**dataclasses.asdict(peer)) for peer in h.peers]
                if name in readable
                else [],
            )
            for name, h in engines.items()
        },
    )
    return JSONResponse(out.model_dump(), status_code=200 if out.ok else 503)


async def _readable(request: Request) -> set[str]:
    if not reads_store(request):  # an address, an open tenant: decided on the loop
        return readable_tenants(request)
    try:
        return await in_store_thread(request, readable_tenants, request)
    except DatabaseUnavailable:  # its key cannot be checked now: told what anyone is
        return set()
