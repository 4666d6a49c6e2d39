"""`worldgen serve`, `worldgen worker`, `worldgen container run` and `worldgen container serve`."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from worldgen.cli.common import add_command
from worldgen.config import Settings, open_storage


def register(commands: argparse._SubParsersAction) -> None:
    serve = add_command(
        commands,
        "serve",
        "run the HTTP API (and, by default, a local worker)",
        "Settings come from WORLDGEN_* variables (data dir, database, storage, models, auth; see the README). "
        "Off loopback, clients need an API key (worldgen keys create NAME).",
        "worldgen serve\nworldgen serve --host 0.0.0.0 --port 8080 --no-worker",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    serve.add_argument("--no-worker", action="store_true", help="only serve the API; workers run elsewhere")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow WORLDGEN_AUTH=off on a non-loopback address (anyone who can reach it can use it)",
    )
    serve.set_defaults(run=_serve)

    worker = add_command(
        commands,
        "worker",
        "run the configured backend alone: a local worker, or the SageMaker dispatcher",
        "Takes worlds from the job database (WORLDGEN_DATABASE_URL) and runs them, for an API started with "
        "`worldgen serve --no-worker`. WORLDGEN_BACKEND=local runs them on this machine "
        "(WORLDGEN_WORKER_CONCURRENCY at once, models from WORLDGEN_MODELS_DIR); sagemaker sends them to "
        "SageMaker Processing. Runs until SIGTERM or Ctrl-C.",
        "WORLDGEN_DATABASE_URL=postgresql+psycopg://db/worldgen worldgen worker",
    )
    worker.set_defaults(run=_worker)

    keys = add_command(
        commands,
        "keys",
        "API keys: create (shown once), list, revoke",
        "Keys live in the job database (WORLDGEN_DATABASE_URL, default: SQLite in WORLDGEN_DATA_DIR); "
        "clients send them as 'Authorization: Bearer <key>' (the CLI reads WORLDGEN_API_KEY).",
        "worldgen keys create laptop\nworldgen keys list\nworldgen keys revoke laptop",
    )
    key_actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION", help="what to do")
    create = add_command(key_actions, "create", "make a key and print it (stored only as a hash)")
    create.add_argument("name", help="a name to recognise the key by (unique among active keys)")
    create.add_argument("--admin", action="store_true", help="sees and manages every world")
    create.add_argument("--webhook", metavar="URL", help="default webhook URL of this key's worlds (own secret)")
    create.set_defaults(run=_keys_create)
    add_command(key_actions, "list", "every key: id, name, prefix, admin, revoked").set_defaults(run=_keys_list)
    revoke = add_command(key_actions, "revoke", "revoke a key by id or name")
    revoke.add_argument("key", help="id or name")
    revoke.set_defaults(run=_keys_revoke)

    container = add_command(commands, "container", "the container contract (SageMaker Processing)")
    actions = container.add_subparsers(dest="container_command", required=True, metavar="ACTION", help="what to do")
    run = add_command(actions, "run", "run the job in /opt/ml (or --root / WORLDGEN_CONTAINER_ROOT)")
    run.add_argument(
        "--root", type=Path, default=None, help="the job's root folder (default: WORLDGEN_CONTAINER_ROOT, else /opt/ml)"
    )
    run.set_defaults(run=_container_run)
    serve_worlds = add_command(
        actions, "serve", "run worlds one after another on one warm process (the local worker's warm mode)"
    )
    serve_worlds.add_argument("--inbox", type=Path, required=True, help='directory of tickets {"root": ...}')
    serve_worlds.set_defaults(run=_container_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from worldgen.api.app import create_app
    from worldgen.api.auth import is_loopback
    from worldgen.api.header_timeout import header_timeout_protocol
    from worldgen.errors import WorldgenError

    settings = Settings()
    if settings.auth == "off" and not is_loopback(args.host) and not args.insecure_no_auth:
        raise WorldgenError(
            f"WORLDGEN_AUTH=off on {args.host} would let anyone who reaches it use the service; "
            "create a key (worldgen keys create NAME) or pass --insecure-no-auth",
            code="configuration",
        )
    app = create_app(settings, run_worker=not args.no_worker, listen_host=args.host)
    http = header_timeout_protocol(settings.body_timeout_seconds)  # headers must arrive in time too
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=5, http=http)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from worldgen.backends.runner import build_backend
    from worldgen.jobs.store import JobStore

    settings = Settings()
    store = JobStore.open(settings.resolved_database_url)
    worker = build_backend(settings, store, open_storage(settings.resolved_storage_url))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker.run(stop)
    return 0


def _container_run(args: argparse.Namespace) -> int:
    from worldgen.container.main import main

    return main(args.root)


def _container_serve(args: argparse.Namespace) -> int:
    from worldgen.container.serve import serve

    return serve(args.inbox)


def _key_store():
    from worldgen.jobs.store import JobStore

    return JobStore.open(Settings().resolved_database_url)


def _keys_create(args: argparse.Namespace) -> int:
    from worldgen.jobs.api_keys import create_key, webhook_secret

    store = _key_store()
    record, key = create_key(store, args.name, admin=args.admin, webhook_url=args.webhook)
    print(key)
    print(f"key {record.id} ({record.name}{', admin' if record.admin else ''}): shown once; send it as "
          "'Authorization: Bearer <key>' (the CLI reads WORLDGEN_API_KEY)", file=sys.stderr)  # fmt: skip
    if args.webhook:
        print(f"webhooks of this key go to {args.webhook}, signed with {webhook_secret(store, record.id)} "
              "(shown once)", file=sys.stderr)  # fmt: skip
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    from worldgen.jobs.api_keys import list_keys

    for key in list_keys(_key_store()):
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        print(f"{key.id}  {key.prefix}…  {key.name}  {'admin' if key.admin else 'user'}  {state}")
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from worldgen.jobs.api_keys import revoke_key

    key = revoke_key(_key_store(), args.key)
    print(f"revoked {key.id} ({key.name})")
    return 0
