"""The FastAPI application: wires settings, store, storage and (by default) the local worker."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope

from worldgen import __version__
from worldgen.api import errors, openapi
from worldgen.api.auth import BrowserGuard, auth_required, current_caller
from worldgen.api.body_limit import BodyLimit
from worldgen.api.rate_limits import RateLimits
from worldgen.api.routes import events, info, integrations, page, session, system, uploads, webhooks, worlds
from worldgen.api.state import AppState
from worldgen.api.webhooks import WebhookSender
from worldgen.config import Settings, open_storage
from worldgen.jobs.store import JobStore
from worldgen.web import STATIC

log = logging.getLogger("worldgen.api")


def create_app(settings: Settings | None = None, *, run_worker: bool = True, listen_host: str | None = None) -> FastAPI:
    """`listen_host`: the address `worldgen serve` listens on (decides WORLDGEN_AUTH=auto and the
    Host allow-list); None when the app is embedded or tested."""
    settings = settings or Settings()
    needs_key = auth_required(settings.auth, listen_host)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = JobStore.open(settings.resolved_database_url)
        storage = open_storage(settings.resolved_storage_url)
        app.state.worldgen = AppState(
            settings=settings, store=store, storage=storage, backend=settings.backend, auth_required=needs_key,
            rate_limits=RateLimits(settings.key_requests_per_second),
        )  # fmt: skip
        stop = threading.Event()
        thread = None
        if run_worker:
            from worldgen.backends.runner import start_backend

            thread = start_backend(settings, store, storage, stop)
        sender = threading.Thread(target=WebhookSender(store, settings).run, args=(stop,), name="worldgen-webhooks",
                                  daemon=True)  # fmt: skip
        sender.start()
        try:
            yield
        finally:
            stop.set()
            if thread is not None:
                thread.join(timeout=settings.cancel_grace_seconds + 10)
            sender.join(timeout=15)
            store.close()

    app = FastAPI(title="worldgen", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    errors.install(app)
    openapi.install(app)  # a truthful schema; /docs and /redoc from local assets
    for module in (worlds, webhooks, uploads, events, info):  # the public API: a caller, with a key where one is needed
        app.include_router(module.router, dependencies=[Depends(current_caller)])
    for module in (session, integrations, system, page):
        app.include_router(module.router)
    app.mount("/static", PageFiles(directory=STATIC, check_dir=False), name="static")
    app.add_middleware(BodyLimit, limit=settings.max_json_bytes, timeout=settings.body_timeout_seconds)
    app.add_middleware(BrowserGuard, listen_host=listen_host, allowed_hosts=tuple(settings.allowed_hosts))
    return app


class PageFiles(StaticFiles):
    """The page's built files; 404 (not 500) for every path while the page is not built."""

    def built(self) -> bool:
        return self.directory is not None and Path(self.directory).is_dir()

    async def check_config(self) -> None:
        if self.built():  # Starlette's check raises (a 500) for a missing directory
            await super().check_config()

    async def get_response(self, path: str, scope: Scope) -> Response:
        if not self.built() and scope["method"] in ("GET", "HEAD"):  # other methods: Starlette's 405
            raise HTTPException(404, f"the page is not built ({path} not found): run scripts/bootstrap")
        return await super().get_response(path, scope)
