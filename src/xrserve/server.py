"""Assembling the server: settings in, a FastAPI app with every transport and the scheduler out."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from rich.console import Console
from starlette.types import ASGIApp

from xrserve import __version__
from xrserve.api import admin, npc, oip, openai, openai_audio, openai_chat, session, vision, worlds, worlds_terrain
from xrserve.api.errors import install_error_handlers
from xrserve.api.fast_path import InferFastPath
from xrserve.api.limits import BodyLimitMiddleware
from xrserve.api.middleware import AuditMiddleware, CancelOnDisconnect
from xrserve.api.ratelimit import RateLimitMiddleware
from xrserve.core.canary import Canary
from xrserve.core.config import CanaryDecl
from xrserve.core.loader import RepositoryState, load_all
from xrserve.core.metrics import Metrics
from xrserve.core.promoted import PromotedVersions
from xrserve.core.repository import RepositorySource
from xrserve.core.scheduler import Scheduler
from xrserve.models import builtin_configs
from xrserve.runtimes import RUNTIMES
from xrserve.security.audit import AuditRecord
from xrserve.security.files import private_dir
from xrserve.security.guard import Guard
from xrserve.security.limits import RateLimits
from xrserve.security.lockout import Lockouts
from xrserve.security.moderation import Moderator
from xrserve.security.storage import open_database
from xrserve.settings import Settings, is_loopback
from xrserve.worlds.jobs import WorldStore
from xrserve.worlds.scene import ScenePipeline

log = logging.getLogger("xrserve")


def create_app(settings: Settings, console: Console | None = None) -> ASGIApp:
    """The ASGI app uvicorn serves: audit and body limit around the inference fast path and FastAPI."""
    console = console or Console(stderr=True)
    metrics = Metrics()
    private_dir(settings.data_dir)
    # keys and the audit trail: SQLite files in the data directory, or the PostgreSQL database replicas share
    database = open_database(settings.database, settings.data_dir)
    audit = database.audit_log()
    if settings.database:
        applied = (
            f"schema migrations applied now: {', '.join(database.migrated)}"
            if database.migrated
            else "schema up to date"
        )
        console.print(f"keys and the audit trail in {database.where} ({applied})")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.scheduler = await start_engine(settings, metrics, console)
        app.state.scheduler.defaults = app.state.promoted.current  # promoted versions (same dict)
        app.state.scheduler.canaries.on_end = lambda canary, reason: audit.record(canary_rollback(canary, reason))
        app.state.scheduler.canaries.store = database.canary_store()
        await load_all(app.state.scheduler, app.state.repository_source, app.state.repository, console)
        app.state.worlds = WorldStore(settings.worlds_dir, ScenePipeline(app.state.scheduler), settings.worlds_keep_s)
        app.state.started = True
        sharing = asyncio.create_task(
            follow_shared_state(
                app.state.promoted, app.state.rate_limits, app.state.scheduler, app.state.guard.lockouts
            )
        )
        try:
            yield
        finally:
            sharing.cancel()
            app.state.started = False
            await app.state.worlds.close()
            await app.state.scheduler.close()
            audit.close()
            database.close()

    app = FastAPI(
        title="xrserve",
        version=__version__,
        description="AI models as a service for VR and AR: Open Inference Protocol v2, OpenAI-compatible API, "
        "XR sessions. Send an API key as `Authorization: Bearer xrs_...`.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.started = False
    app.state.repository = RepositoryState()
    # the pieces core is handed: where models come from (user directories + the built-ins) and the runtimes
    app.state.repository_source = RepositorySource(
        settings.model_repositories, builtin_configs if settings.builtins else list, settings.only_models
    )
    app.state.promoted = PromotedVersions(settings.data_dir / "default_versions.json", database.promoted_store())
    app.state.database = database
    app.state.guard = Guard(database.key_store(), settings.anonymous_allowed, settings.lockout, database.lockouts())
    # per key: in this process, or with --database in the database every replica shares
    app.state.rate_limits = RateLimits(shared=database.rate_buckets(), sessions=database.session_leases())
    app.state.moderator = Moderator.from_file(settings.moderation) if settings.moderation else Moderator.from_file()
    install_error_handlers(app)
    for router in (
        oip.router,
        openai.router,
        openai_chat.router,
        openai_audio.router,
        npc.router,
        admin.router,
        session.router,
        vision.router,
        worlds.router,
        worlds_terrain.router,
    ):
        app.include_router(router)
    mount_web_client(app)
    # outside FastAPI's own per-request stack, so the hot path skips it; the audit is
    # outermost so that even a 413 is recorded; the rate limits count the fast path too
    rated = RateLimitMiddleware(InferFastPath(app), app.state.rate_limits)
    limited = BodyLimitMiddleware(CancelOnDisconnect(rated), limit=settings.max_body_bytes)
    return AuditMiddleware(limited, audit=audit, metrics=metrics)


SHARED_STATE_READ_EVERY_S = 1.0
LEASES_RENEWED_EVERY_S = 10.0


async def follow_shared_state(
    promoted: PromotedVersions, limits: RateLimits, scheduler: Scheduler, lockouts: Lockouts
) -> None:
    """With a shared store: follow what other replicas promoted, the canaries they run or ended and the
    key lockouts they made, and keep this replica's session leases alive.

    Off the event loop (each is a database round trip); a database that is away is tried again next time
    (requests that need it get their own 503 meanwhile).
    """
    last_renewal = time.monotonic()
    while True:
        await asyncio.sleep(SHARED_STATE_READ_EVERY_S)
        try:
            if promoted.store is not None:
                promoted.apply(await asyncio.to_thread(promoted.store.load))
            if lockouts.shared is not None:
                lockouts.follow(await asyncio.to_thread(lockouts.shared.locked))
            canaries = scheduler.canaries
            if canaries.store is not None:
                canaries.follow(await asyncio.to_thread(canaries.store.load), partial(canary_policy, scheduler))
            if time.monotonic() - last_renewal >= LEASES_RENEWED_EVERY_S:
                last_renewal = time.monotonic()
                await asyncio.to_thread(limits.renew_sessions)
        except Exception as exc:  # noqa: BLE001 - the database away: the next round tries again
            log.warning("shared state not read this time: %s", exc)


def canary_policy(scheduler: Scheduler, name: str, version: str) -> CanaryDecl | None:
    """The `[canary]` table of a loaded version; None where this replica does not have the version."""
    model = scheduler.models.get(name, {}).get(version)
    return model.config.canary if model is not None else None


async def start_engine(settings: Settings, metrics: Metrics, console: Console) -> Scheduler:
    """Where the models compute: here (the embedded engine), or in Ray Serve replicas (`--engine ray`)."""
    if settings.engine != "ray":
        return Scheduler(RUNTIMES, metrics, frame_policy=settings.frame_policy)
    from xrserve.engines.ray.engine import RayEngine  # ray is imported only when it is asked for

    engine = RayEngine(RUNTIMES, metrics, frame_policy=settings.frame_policy, address=settings.ray_address)
    where = f"joining the Ray cluster at {settings.ray_address}" if settings.ray_address else "starting a local Ray"
    with console.status(f"{where} (Serve without its HTTP proxy: this server is the front)"):
        await engine.start()
    console.print(f"engine: Ray Serve ({settings.ray_address or 'local instance'}); one application per model version")
    return engine


def canary_rollback(canary: Canary, reason: str) -> AuditRecord:
    """The audit record of a canary ended automatically: which version, and why."""
    return AuditRecord(
        time=time.time(),
        key_id=None,
        method="AUTO",
        route="canary rollback",
        model=canary.name,
        version=canary.version,
        status=200,
        latency_ms=0.0,
        note=f"{reason}; every request without a version goes to version {canary.stable} again",
    )


WEB_DIR = Path(__file__).parent / "web"


def mount_web_client(app: FastAPI) -> None:
    """The browser client at /web/ (and / redirects there): the page `make run` opens."""
    app.mount("/web", StaticFiles(directory=WEB_DIR, html=True), name="web")

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/web/")


def serve(settings: Settings) -> None:
    import uvicorn

    # everything the server creates (the data directory, its databases, worlds/) is its user's alone
    os.umask(0o077)
    # past a file-size limit a write fails with EFBIG (the audit then refuses requests with a 503)
    # instead of the signal killing the server
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    console = Console(stderr=True)
    app = create_app(settings, console)
    mode = "dev mode: requests without a key are allowed" if settings.anonymous_allowed else "API keys required"
    url = f"{settings.scheme}://{settings.host}:{settings.port}"
    console.print(f"[bold]xrserve {__version__}[/] on {url} ({mode}); data in {settings.data_dir}")
    console.print(f"web client: {url}/web/")
    if not (WEB_DIR / "dist" / "app.js").exists():
        console.print("[yellow]the web client is not built: run `make web` (npm ci + esbuild) in the repository[/]")
    if not settings.tls_cert and not is_loopback(settings.host):
        console.print(
            f"[yellow]--host {settings.host} without TLS: keys travel in clear text, and a headset's browser "
            "offers WebXR only on a secure origin. Add --tls-cert and --tls-key (see docs/web-client.md).[/]"
        )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=5,
    )
