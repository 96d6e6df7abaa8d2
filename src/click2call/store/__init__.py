"""The store: the single source of truth for calls and their history."""

from click2call.store.database import open_database
from click2call.store.keys import ApiKey, AuditEntry, KeyStore
from click2call.store.outbox import Attempt, Delivery, DeliveryState, Outbox, Subscription
from click2call.store.repository import (
    CallTimeouts,
    Change,
    NewCall,
    Store,
    StoredCall,
    StoredEvent,
    Writes,
)
from click2call.store.sessions import SessionStore

__all__ = [
    "ApiKey",
    "Attempt",
    "AuditEntry",
    "CallTimeouts",
    "Change",
    "Delivery",
    "DeliveryState",
    "KeyStore",
    "NewCall",
    "Outbox",
    "SessionStore",
    "Store",
    "StoredCall",
    "StoredEvent",
    "Subscription",
    "Writes",
    "open_database",
]
