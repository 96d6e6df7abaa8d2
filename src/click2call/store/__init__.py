"""The store: the single source of truth for calls and their history."""

from click2call.store.database import open_database
from click2call.store.keys import ApiKey, AuditEntry, KeyStore
from click2call.store.repository import NewCall, Store, StoredCall, StoredEvent

__all__ = [
    "ApiKey",
    "AuditEntry",
    "KeyStore",
    "NewCall",
    "Store",
    "StoredCall",
    "StoredEvent",
    "open_database",
]
