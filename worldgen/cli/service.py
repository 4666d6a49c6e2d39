"""`worldgen serve`, `worldgen worker`, `worldgen container run` and `worldgen container serve`."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from worldgen.config import Settings, open_storage


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run the HTTP API (and, by default, a local worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-worker", action="store_true", help="only serve the API; workers run elsewhere")
    serve.set_defaults(run=_serve)

    worker = commands.add_parser(
        "worker", help="run the configured backend alone: a local worker, or the SageMaker dispatcher"
    )
    worker.set_defaults(run=_worker)

    container = commands.add_parser("container", help="the container contract (SageMaker Processing)")
    actions = container.add_subparsers(dest="container_command", required=True, metavar="ACTION")
    run = actions.add_parser("run", help="run the job in /opt/ml (or --root / WORLDGEN_CONTAINER_ROOT)")
    run.add_argument("--root", type=Path, default=None)
    run.set_defaults(run=_container_run)
    serve_worlds = actions.add_parser(
        "serve", help="run worlds one after another on one warm process (the local worker's warm mode)"
    )
    serve_worlds.add_argument("--inbox", type=Path, required=True, help='directory of tickets {"root": ...}')
    serve_worlds.set_defaults(run=_container_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from worldgen.api.app import create_app

    app = create_app(Settings(), run_worker=not args.no_worker)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=5)
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
    from worldgen.container.entrypoint import main

    return main(args.root)


def _container_serve(args: argparse.Namespace) -> int:
    from worldgen.container.serve import serve

    return serve(args.inbox)
