"""Command line: `click2call serve | check-config | keys | webhooks | db | demo`."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import ValidationError

from click2call import __version__, cli_calls, logs
from click2call.settings import CONFIG_ENV, DEFAULT_CONFIG_FILE, Settings, load_settings

log = logging.getLogger("click2call")


def _settings(path: str | None) -> Settings:
    where = path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE
    try:
        return load_settings(path)
    except ValidationError as exc:
        # Field paths and rules only: the rejected values may be secrets.
        problems = "\n".join(
            f"  {'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise SystemExit(f"click2call: bad configuration in {where}:\n{problems}") from None
    except (OSError, ValueError) as exc:
        raise SystemExit(f"click2call: bad configuration: {exc}") from None


def _database(settings: Settings) -> str:
    from click2call.store.database import describe

    return f"database: {describe(settings.server.database)}"


@contextmanager
def _database_errors() -> Iterator[None]:
    """A database that is out of date or out of reach stops a command with a sentence."""
    from click2call.errors import DatabaseUnavailable
    from click2call.store.schema_version import SchemaOutOfDate

    try:
        yield
    except SchemaOutOfDate as exc:
        raise SystemExit(f"click2call: {exc}") from None
    except DatabaseUnavailable as exc:
        # The driver's own sentence (host, port, cause); never the URL, which may hold a password.
        raise SystemExit(f"click2call: cannot use the database: {exc.reason}") from None


def _with_node_id(settings: Settings, node_id: str) -> Settings:
    from click2call.settings import ServerSettings

    try:
        server = ServerSettings.model_validate({**settings.server.model_dump(), "node_id": node_id})
    except ValidationError:
        raise SystemExit(
            "click2call: bad --node-id: 1 to 128 printable ASCII characters, no spaces"
        ) from None
    return settings.model_copy(update={"server": server})


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from click2call import workers
    from click2call.api import create_app
    from click2call.api.connections import guarded_protocol
    from click2call.runtime import Runtime

    settings = _settings(args.config)
    if args.node_id is not None:
        settings = _with_node_id(settings, args.node_id)
    if args.workers > 1:
        if settings.server.database.startswith("sqlite"):
            raise SystemExit(
                "click2call: several workers share one database: use PostgreSQL "
                '([server] database = "postgresql://…"); a SQLite file is for one process'
            )
        if (clash := workers.port_clash(settings, args.workers)) is not None:
            raise SystemExit(f"click2call: {clash}")
        node_id = workers.default_node_id(settings)
        return workers.supervise(args.config, node_id, args.workers)
    if args.worker_index is not None:
        settings = workers.for_worker(settings, args.worker_index)
    logs.configure(settings.server.log_level, settings.server.log_format)
    # The event loop shares the interpreter with the store's writer threads: when it wakes
    # (a SIP answer to relay) it waits at most this long for them to let go, not 5 ms.
    sys.setswitchinterval(0.0005)
    log.info(_database(settings))
    with _database_errors():
        runtime = Runtime(settings)
    config = uvicorn.Config(
        create_app(runtime),
        host=settings.server.host,
        port=settings.server.port,
        log_level=settings.server.log_level,
        access_log=False,  # ours (api/access.py) hides keys and signatures
        http=guarded_protocol(settings.server),  # slow and greedy clients
        ws="none",  # no upgrades: a handed-over transport would keep its per-address count
        log_config=None,  # uvicorn's lines go through our handler (text or JSON)
        proxy_headers=True,
        forwarded_allow_ips=settings.server.forwarded_allow_ips,  # not the environment's
    )
    # What is built by now (modules, settings, the app, the store's tables) lives as long as
    # the process: frozen out of the collector's sight, a full collection scans only what
    # requests and calls leave behind (it scanned ~140,000 objects each time, ~7 % of the
    # server's CPU under a stream of requests).
    gc.freeze()
    sockets = None
    if args.worker_index is not None:  # the HTTP port is shared by the node's workers
        sockets = [workers.shared_socket(settings.server.host, settings.server.port)]
    uvicorn.Server(config).run(sockets=sockets)
    return 0


def check_config(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    print(f"configuration is valid: {len(settings.tenants)} tenant(s)")
    print(_database(settings))
    for tenant in settings.tenants:
        print(
            f"  {tenant.name}: engine={tenant.engine} pbx={tenant.sip.pbx} trunk={tenant.sip.trunk}"
        )
        if tenant.engine == "sip":
            for role, address in (
                ("pbx", tenant.sip.pbx_address),
                ("trunk", tenant.sip.trunk_address),
            ):
                problem = _unresolvable(address.host)
                if problem:
                    print(f"  warning: {tenant.name}: {role} host {address.host!r} {problem}")
    return 0


def _unresolvable(host: str) -> str | None:
    """Why `host` does not resolve, or None when it does (calls to it would fail at once)."""
    try:
        socket.getaddrinfo(host, None)
    except OSError as exc:
        return f"does not resolve: {exc.strerror or exc}"
    return None


def keys(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from click2call.store import KeyStore, open_database

    settings = _settings(args.config)
    # On stderr: stdout carries only what a script may want to keep (the new key).
    print(_database(settings), file=sys.stderr)
    with _database_errors():
        store = KeyStore(open_database(settings.server.database))
    now = datetime.now(UTC)
    if args.action == "create":
        if settings.tenant(args.tenant) is None:
            raise SystemExit(f"click2call: no tenant named {args.tenant!r} in the configuration")
        key, secret = store.create(args.tenant, args.label, now, admin=args.admin)
        kind = "admin key" if key.admin else "key"
        print(f"created {kind} {key.id} for tenant {key.tenant}; it is shown only this once:")
        print(secret)
        return 0
    if args.action == "list":
        for key in store.listing(args.tenant):
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
            label = key.label or ""
            print(f"{key.id:>5}  {key.tenant:<16} {key.prefix}…  {state:<24} {label}")
        return 0
    if not store.revoke(args.id, now):
        raise SystemExit(f"click2call: no active key with id {args.id}")
    print(f"key {args.id} revoked")
    return 0


def webhooks(args: argparse.Namespace) -> int:
    import secrets
    from datetime import UTC, datetime

    from click2call.store import Outbox, open_database
    from click2call.webhooks.signing import new_secret

    if args.action == "new-secret":
        print(new_secret(secrets.token_bytes(32)))
        return 0
    settings = _settings(args.config)
    print(_database(settings), file=sys.stderr)
    with _database_errors():
        outbox = Outbox(open_database(settings.server.database))
    if args.action == "list-failed":
        for d in outbox.failed(args.limit):
            print(
                f"{d.outbox_id:>7}  call {d.call_id:<8} #{d.sequence:<3} {d.type:<26} "
                f"{d.attempts:>2} tries  {d.last_error or ''}  → {d.url}"
            )
        return 0
    if not args.all and not args.ids:
        raise SystemExit("click2call: give delivery ids (see list-failed) or --all")
    queued = outbox.retry_failed(datetime.now(UTC), None if args.all else args.ids)
    print(f"{queued} failed deliveries queued again; a running server sends them within seconds")
    return 0


def db(args: argparse.Namespace) -> int:
    """Migrations, run once per deploy: a shared database is never migrated by `serve`."""
    from click2call.store import schema_version
    from click2call.store.database import connect

    settings = _settings(args.config)
    print(_database(settings), file=sys.stderr)
    if args.action == "prune":
        return _prune(settings, args.older_than)
    engine = connect(settings.server.database)
    try:
        with _database_errors():
            if args.action == "upgrade":
                before, after = schema_version.upgrade(engine)
                if before == after:
                    print(f"database schema already at revision {after}")
                else:
                    print(f"database schema upgraded from {before or 'empty'} to {after}")
                return 0
            found, wanted = schema_version.current(engine), schema_version.head()
            print(f"database schema at revision {found or 'none'}; this version needs {wanted}")
            return 0 if found == wanted else 1
    finally:
        engine.dispose()


def _prune(settings: Settings, days: float | None) -> int:
    """Remove what is older than `days` (store/retention.py), printing how much."""
    from datetime import UTC, datetime, timedelta

    from click2call.store import open_database
    from click2call.store.retention import prune

    if days is None or not days > 0:
        raise SystemExit("click2call: db prune needs --older-than DAYS, a number above 0")
    try:
        cutoff = datetime.now(UTC) - timedelta(days=days)
    except OverflowError:  # inf, or before year 1
        raise SystemExit("click2call: db prune --older-than DAYS reaches before year 1") from None
    with _database_errors():
        engine = open_database(settings.server.database, migrate=False)
        try:
            gone = prune(engine, cutoff)
        finally:
            engine.dispose()
    print(
        f"removed what ended before {cutoff:%Y-%m-%d %H:%M} UTC: {gone.calls} call(s) with "
        f"{gone.events} event(s), {gone.deliveries} webhook deliveries with {gone.attempts} "
        f"attempt(s), {gone.audit_rows} audit row(s)"
    )
    return 0


def demo(args: argparse.Namespace) -> int:
    from click2call.demo import run_demo

    return run_demo()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="click2call", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    # --config is taken before or after any subcommand: `keys --config F create` and
    # `keys create --config F` both work.
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        help=f"TOML file (default: ${CONFIG_ENV} or ./{DEFAULT_CONFIG_FILE}); "
        "a relative SQLite database path is read against its folder",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (
        ("serve", serve, "run the HTTP server and the call engines"),
        ("check-config", check_config, "validate the configuration and exit"),
    ):
        command = commands.add_parser(name, help=text, parents=[config])
        command.set_defaults(func=func)
        if name == "serve":
            command.add_argument(
                "--node-id",
                help="this node's name among those sharing the database "
                "(default: [server] node_id, else host name:HTTP port)",
            )
            command.add_argument(
                "--workers",
                type=int,
                default=1,
                help="server processes sharing the HTTP port, each with its own engines "
                "and SIP port ([sip] port + its index); PostgreSQL only",
            )
            command.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    command = commands.add_parser("keys", help="create, list or revoke API keys", parents=[config])
    actions = command.add_subparsers(dest="action", required=True)
    create = actions.add_parser(
        "create", help="a new key for a tenant, shown once", parents=[config]
    )
    create.add_argument("--tenant", required=True)
    create.add_argument("--label", help="who or what uses it, e.g. 'CRM production'")
    create.add_argument("--admin", action="store_true", help="may also manage keys (dashboard)")
    listing = actions.add_parser("list", help="keys (never the keys themselves)", parents=[config])
    listing.add_argument("--tenant")
    revoke = actions.add_parser("revoke", help="stop a key from working", parents=[config])
    revoke.add_argument("id", type=int)
    command.set_defaults(func=keys)
    command = commands.add_parser(
        "webhooks", help="failed webhook deliveries: list, retry; new secrets", parents=[config]
    )
    actions = command.add_subparsers(dest="action", required=True)
    failed = actions.add_parser(
        "list-failed", help="deliveries given up or refused, newest first", parents=[config]
    )
    failed.add_argument("--limit", type=int, default=100)
    retry = actions.add_parser(
        "retry", help="send failed deliveries again (re-enables their endpoints)", parents=[config]
    )
    retry.add_argument("ids", type=int, nargs="*", help="delivery ids from list-failed")
    retry.add_argument("--all", action="store_true", help="every failed delivery")
    actions.add_parser("new-secret", help="print a new webhook secret (whsec_…)")
    command.set_defaults(func=webhooks)
    cli_calls.add_commands(commands, config, _settings)
    command = commands.add_parser(
        "db",
        help="database schema: upgrade once per deploy, status; prune old history",
        parents=[config],
    )
    command.add_argument("action", choices=("upgrade", "status", "prune"))
    command.add_argument(
        "--older-than",
        type=float,
        metavar="DAYS",
        help="prune: ended calls, finished webhook deliveries and audit rows older than this",
    )
    command.set_defaults(func=db)
    command = commands.add_parser(
        "demo", help="place one call between two SIPp phones on loopback (its own settings)"
    )
    command.set_defaults(func=demo)
    args = parser.parse_args(argv)
    if not hasattr(args, "config"):
        args.config = None
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
