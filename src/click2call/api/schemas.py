"""The v1 JSON shapes. Field validators reuse the edge grammar in fields.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal, TypeVar

from fastapi import Request
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from click2call.api import fields
from click2call.api.errors import DOCUMENTED_FAILURES, invalid_input
from click2call.calls import CallState, Result
from click2call.errors import InvalidInput
from click2call.store import StoredCall, StoredEvent
from click2call.store.event_body import durations

T = TypeVar("T")


class CallCreate(BaseModel):
    """A call order: `extension` (+ `tech`) rings an extension, `phone` a mobile via the trunk."""

    model_config = ConfigDict(extra="forbid")

    tenant: str | None = Field(
        None,
        description="Tenant; by default the API key's, else the default tenant",
        json_schema_extra={"pattern": fields.NAME},
    )
    extension: str | None = Field(None, json_schema_extra={"pattern": fields.EXTENSION})
    tech: Literal["sip", "pjsip"] | None = None
    phone: str | None = Field(None, json_schema_extra={"pattern": fields.PHONE})
    destination: str = Field(json_schema_extra={"pattern": fields.PHONE})
    outboundcid: str | None = Field(None, json_schema_extra={"pattern": fields.CALLER_ID})
    foreignid: str | None = Field(None, json_schema_extra={"pattern": fields.FOREIGNID})
    callback_url: str | None = Field(
        None,
        description="Receives this call's events as signed webhooks (http/https)",
        json_schema_extra={"pattern": fields.CALLBACK_URL},
    )

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, v: str | None) -> str | None:
        return None if v is None else _grammar(lambda: fields.name("tenant", v))

    @field_validator("extension")
    @classmethod
    def _extension(cls, v: str | None) -> str | None:
        return None if v is None else _grammar(lambda: fields.extension(v))

    @field_validator("phone", "destination")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        return None if v is None else _grammar(lambda: fields.phone("number", v))

    @field_validator("outboundcid")
    @classmethod
    def _cid(cls, v: str | None) -> str | None:
        return _grammar(lambda: fields.caller_id(v))

    @field_validator("foreignid")
    @classmethod
    def _foreignid(cls, v: str | None) -> str | None:
        return _grammar(lambda: fields.foreignid(v))

    @field_validator("callback_url")
    @classmethod
    def _callback_url(cls, v: str | None) -> str | None:
        return _grammar(lambda: fields.callback_url(v))

    @model_validator(mode="after")
    def _one_agent(self) -> CallCreate:
        if (self.extension is None) == (self.phone is None):
            raise ValueError("give exactly one of 'extension' or 'phone'")
        return self


def _grammar(check: Callable[[], T]) -> T:
    """Run a fields.py check, turning its InvalidInput into the ValueError pydantic reports."""
    try:
        return check()
    except InvalidInput as exc:
        raise ValueError(exc.reason) from None


class ErrorBody(BaseModel):
    id: str = Field(description="Stable machine id: invalid_input, unauthorized, rejected, …")
    message: str
    field: str | None = None
    limit: str | None = Field(None, description="The setting a 429 hit, e.g. calls_per_second")
    call_id: int | None = None
    uniqueid: str | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorOut, "description": text} for status, text in DOCUMENTED_FAILURES
}


class EventOut(BaseModel):
    id: int = Field(description="Global event id (the live feed's event id)")
    sequence: int = Field(description="Per call, from 1")
    type: str = Field(description="call.<state>, or call.rejected")
    state: CallState
    result: Result | None
    cause: str | None
    at: datetime

    @classmethod
    def of(cls, event: StoredEvent) -> EventOut:
        return cls(
            id=event.id,
            sequence=event.sequence,
            type=event.type,
            state=event.state,
            result=event.result,
            cause=event.cause,
            at=event.at,
        )


class CallOut(BaseModel):
    id: int
    uniqueid: str
    tenant: str
    state: CallState
    result: Result | None
    cause: str | None = Field(description="Raw cause: SIP status line or reason")
    agent: dict[str, str | None]
    destination: str
    destination_caller_id: str
    agent_caller_id: str
    foreignid: str | None
    created_at: datetime
    agent_answered_at: datetime | None
    connected_at: datetime | None
    ended_at: datetime | None
    duration_seconds: float | None = Field(description="Connected time, once ended")
    ring_seconds: float | None = Field(description="Created until connected (or ended)")
    talk_seconds: float | None = Field(description="Connected until ended")
    total_seconds: float | None = Field(description="Created until ended")
    events: list[EventOut] | None = None

    @classmethod
    def of(cls, call: StoredCall, events: list[StoredEvent] | None = None) -> CallOut:
        duration = None
        if call.connected_at is not None and call.ended_at is not None:
            duration = (call.ended_at - call.connected_at).total_seconds()
        return cls(
            id=call.id,
            uniqueid=call.uniqueid,
            tenant=call.tenant,
            state=call.state,
            result=call.result,
            cause=call.cause,
            agent={"kind": call.agent_kind, "tech": call.agent_tech, "number": call.agent_number},
            destination=call.destination,
            destination_caller_id=call.destination_caller_id,
            agent_caller_id=call.agent_caller_id,
            foreignid=call.foreignid,
            created_at=call.created_at,
            agent_answered_at=call.agent_answered_at,
            connected_at=call.connected_at,
            ended_at=call.ended_at,
            duration_seconds=duration,
            **durations(call),
            events=None if events is None else [EventOut.of(e) for e in events],
        )


class CallList(BaseModel):
    calls: list[CallOut]
    next: str | None = Field(None, description="Link to the next page (older calls); null: last")


class PeerOut(BaseModel):
    role: str
    target: str
    state: str
    last_reply: str | None
    rtt_ms: float | None
    reason: str | None


class EngineOut(BaseModel):
    engine: str
    ok: bool
    detail: str
    active_calls: int
    peers: list[PeerOut] = []  # the SIP engine's OPTIONS probes of the pbx and trunk


class DatabaseOut(BaseModel):
    ok: bool
    detail: str


class HealthOut(BaseModel):
    ok: bool
    database: DatabaseOut
    tenants: dict[str, EngineOut]


class EventList(BaseModel):
    events: list[EventOut]


class AttemptOut(BaseModel):
    at: datetime
    status: int | None = Field(description="HTTP status; null when no reply came")
    error: str | None
    seconds: float


class DeliveryOut(BaseModel):
    id: int = Field(description="Outbox id; `webhook-id` is msg_<id>")
    url: str
    type: str
    sequence: int
    state: str = Field(description="pending, delivered or failed")
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    done_at: datetime | None
    attempts_made: list[AttemptOut]


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]


M = TypeVar("M", bound=BaseModel)


async def json_body(request: Request, model: type[M]) -> M:
    """The request's JSON body as `model`, read only now: endpoints check credentials first
    (FastAPI reads a model parameter before the endpoint runs). Bounded by api/limits.py."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise invalid_input(exc.errors()) from None


def request_body(model: type[BaseModel]) -> dict[str, object]:
    """openapi_extra documenting `model` as the JSON body an endpoint reads itself."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
