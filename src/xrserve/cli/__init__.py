"""The `xrserve` command: serve, models, infer, keys, audit."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from xrserve import __version__

try:  # typer >= 0.20 vendors click; older releases use click itself
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException, UsageError  # type: ignore[assignment]
from xrserve.settings import DEFAULT_MAX_BODY_BYTES, Settings, default_data_dir

if TYPE_CHECKING:
    from xrserve.security.storage import Database

app = typer.Typer(
    help="xrserve: AI models as a service for VR and AR.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
keys_app = typer.Typer(help="Create, list, limit, rotate and revoke API keys.", no_args_is_help=True)
audit_app = typer.Typer(help="Read the audit trail.", no_args_is_help=True)
models_app = typer.Typer(help="List the models of a running server.")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(models_app, name="models")
ray_app = typer.Typer(help="The Ray Serve engine of a running server (--engine ray).", no_args_is_help=True)
app.add_typer(ray_app, name="ray")

out = Console()
err = Console(stderr=True)

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        help="Where keys and the audit trail live (default: $XRSERVE_DATA_DIR or ~/.local/share/xrserve).",
        file_okay=False,
    ),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database",
        envvar="XRSERVE_DATABASE",
        help="Keep keys and the audit trail in this PostgreSQL database, shared by every server and replica: "
        "postgresql://USER@HOST:PORT/DB (password in ~/.pgpass or $PGPASSWORD). Default: SQLite files in --data-dir.",
        show_default=False,
    ),
]
Url = Annotated[str, typer.Option("--url", envvar="XRSERVE_URL", help="The server to talk to.")]
Key = Annotated[str | None, typer.Option("--key", envvar="XRSERVE_API_KEY", help="API key (xrs_...).")]


def fail(message: str) -> NoReturn:
    err.print(f"xrserve: error: {message}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(2)


@contextmanager
def _store(data_dir: Path, database: str | None) -> Iterator[Database]:
    """The store keys and the audit trail live in (`--database`, else the data directory); errors end the command."""
    from xrserve.core.errors import Unavailable
    from xrserve.security.storage import StoreUnreachable, open_database

    try:
        store = open_database(database, data_dir)
    except (ValueError, StoreUnreachable) as exc:
        fail(str(exc))
    try:
        yield store
    except Unavailable as exc:  # the database went away meanwhile
        fail(exc.message)
    finally:
        store.close()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8000,
    model_repository: Annotated[
        list[Path] | None,
        typer.Option(
            "--model-repository",
            help="Directory of <model>/<version>/model.toml; repeatable.",
            exists=True,
            file_okay=False,
            dir_okay=True,
        ),
    ] = None,
    data_dir: DataDir = default_data_dir(),
    dev: Annotated[
        bool,
        typer.Option(
            "--dev",
            help="Allow requests without an API key or with a placeholder token like EMPTY; xrs_ keys are "
            "still checked (loopback only).",
        ),
    ] = False,
    max_body_mb: Annotated[
        float, typer.Option(help="Largest request body accepted, in MiB.", min=0.001)
    ] = DEFAULT_MAX_BODY_BYTES / 2**20,
    no_builtins: Annotated[
        bool, typer.Option("--no-builtins", help="Serve only the --model-repository models.")
    ] = False,
    only: Annotated[list[str] | None, typer.Option("--only", help="Load only these models; repeatable.")] = None,
    moderation: Annotated[
        Path | None,
        typer.Option(help="Content filter lists (TOML) replacing the defaults.", exists=True, dir_okay=False),
    ] = None,
    frame_policy: Annotated[
        str,
        typer.Option(
            "--frame-policy",
            help="Camera frames: 'deadline' (latest frame wins, fair between sessions) or "
            "'fifo' (first in, first out; for comparison).",
        ),
    ] = "deadline",
    npc_model: Annotated[
        list[str] | None,
        typer.Option(
            "--npc-model",
            help="ROLE=MODEL: which model plays a talking character's part (asr, vad, llm, tts, "
            "embeddings), e.g. --npc-model llm=my-llm; repeatable. Default: the built-ins.",
        ),
    ] = None,
    keep_worlds_h: Annotated[
        float,
        typer.Option("--keep-worlds-h", min=0.01, help="Hours generated scenes and their jobs are kept on disk."),
    ] = 24.0,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            "--tls-cert",
            help="PEM certificate: serve HTTPS and WSS (a headset's browser needs them for WebXR).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="PEM private key of --tls-cert.", exists=True, dir_okay=False)
    ] = None,
    database: DatabaseUrl = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="Where the models compute: 'embedded' (this server's processes) or 'ray' (Ray Serve "
            "deployments, one per model version; `pip install xrserve[ray]`).",
        ),
    ] = "embedded",
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            envvar="XRSERVE_RAY_ADDRESS",
            help="With --engine ray: the Ray cluster to join (e.g. auto). Default: start a local instance.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start the server with the built-in models and any model repositories."""
    from xrserve.server import serve as run_server

    try:
        roles = [item.partition("=") for item in npc_model or []]
        if any(not sep or not role or not name for role, sep, name in roles):
            raise ValueError("--npc-model takes ROLE=MODEL, e.g. --npc-model llm=smollm2")
        settings = Settings(
            host=host,
            port=port,
            data_dir=data_dir,
            model_repositories=model_repository or [],
            builtins=not no_builtins,
            dev=dev,
            max_body_bytes=int(max_body_mb * 2**20),
            only_models=only,
            moderation=moderation,
            frame_policy=frame_policy,
            npc_models={role: name for role, _, name in roles},
            worlds_keep_s=keep_worlds_h * 3600,
            tls_cert=tls_cert,
            tls_key=tls_key,
            database=database or None,
            engine=engine,
            ray_address=ray_address or None,
        )
        if moderation is not None:
            from xrserve.security.moderation import Moderator

            Moderator.from_file(moderation)  # a broken list is a start-up error, not a surprise later
    except ValueError as exc:
        fail(str(exc))
    from xrserve.security.storage import StoreUnreachable

    try:
        run_server(settings)
    except StoreUnreachable as exc:
        fail(str(exc))


def _client(url: str, key: str | None, timeout: float = 60):  # noqa: ANN202 - httpx is imported lazily (fast --help)
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=timeout)


def _call(url: str, key: str | None, method: str, path: str, timeout: float = 60, **kwargs):  # noqa: ANN202
    import httpx

    try:
        with _client(url, key, timeout) as client:
            response = client.request(method, path, **kwargs)
    except httpx.TimeoutException:
        # the connection is closed on the way out, which cancels the request on the server
        fail(f"the server at {url} did not answer within {timeout:g} s (--timeout); the request was cancelled")
    except httpx.HTTPError as exc:
        fail(f"cannot reach the server at {url}: {exc}")
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        fail(f"{response.status_code}: {message}")
    return response


@models_app.callback(invoke_without_command=True)
def models(ctx: typer.Context, url: Url = "http://127.0.0.1:8000", key: Key = None) -> None:
    """List every model version on a running server, with its state and, if it failed, why."""
    if ctx.invoked_subcommand is not None:
        return
    entries = _call(url, key, "POST", "/v2/repository/index").json()
    table = Table("model", "version", "state", "reason")
    for entry in entries:
        table.add_row(entry["name"], entry.get("version") or "-", entry["state"], entry.get("reason") or "")
    out.print(table)


@ray_app.command("status")
def ray_status(url: Url = "http://127.0.0.1:8000", key: Key = None) -> None:
    """Each model version's Serve application, its replicas by state, and what each replica last reported."""
    status = _call(url, key, "GET", "/v1/engine").json()
    if status["engine"] != "ray":
        fail(f"the server at {url} runs the embedded engine (start it with --engine ray)")
    title = f"Ray Serve at {status['address']}" + (" (started by this server)" if status["started_here"] else "")
    table = Table("application", "status", "replicas", "message", title=title)
    for name, app_status in sorted(status["applications"].items()):
        counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(app_status["replicas"].items()))
        table.add_row(name, app_status["status"], counts or "-", app_status["message"] or "")
    out.print(table)
    table = Table("model", "version", "replica", "state", "node", "pid", "last report")
    for replica in status["replicas"]:
        table.add_row(
            replica["model"],
            replica["version"],
            replica["replica"],
            replica["state"] + (f" ({replica['reason']})" if replica["reason"] else ""),
            replica["node"],
            str(replica["pid"]),
            f"{replica['age_s']:.1f} s ago",
        )
    out.print(table)


@app.command()
def infer(
    model: Annotated[str, typer.Argument(help="Model name.")],
    inputs: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", help="NAME=JSON, e.g. -i text='[\"hello\"]'. Datatype comes from the model."),
    ] = None,
    request_file: Annotated[
        Path | None,
        typer.Option(
            "--request", help="A JSON file with a whole Open Inference Protocol request.", exists=True, dir_okay=False
        ),
    ] = None,
    version: Annotated[str | None, typer.Option(help="Model version (default: the newest).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer; then it is cancelled.", min=0.1)] = 60,
    url: Url = "http://127.0.0.1:8000",
    key: Key = None,
) -> None:
    """Send one inference request and print the outputs."""
    if request_file is not None:
        try:
            document = json.loads(request_file.read_text())
        except ValueError as exc:
            fail(f"{request_file} is not JSON: {exc}")
    else:
        if not inputs:
            fail("give inputs with -i NAME=JSON or a whole request with --request FILE")
        assert inputs is not None
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "")
        declared = {t["name"]: t for t in _call(url, key, "GET", path).json()["inputs"]}
        tensors = []
        for item in inputs:
            name, sep, raw = item.partition("=")
            if not sep or name not in declared:
                fail(f"--input '{item}': expected NAME=JSON with NAME one of {sorted(declared)}")
            try:
                value = json.loads(raw)
            except ValueError:
                if declared[name]["datatype"] != "BYTES":
                    fail(f"--input {name}: '{raw}' is not JSON")
                value = [raw]
            import numpy as np

            shape = list(np.array(value, dtype=object).shape) or [1]
            tensors.append(
                {
                    "name": name,
                    "datatype": declared[name]["datatype"],
                    "shape": shape,
                    "data": value if isinstance(value, list) else [value],
                }
            )
        document = {"inputs": tensors}
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    result = _call(url, key, "POST", path, timeout=timeout, json=document).json()
    for output in result["outputs"]:
        data = output.get("data", [])
        shown = data if len(data) <= 16 else [*data[:16], f"... {len(data) - 16} more"]
        out.print(f"[bold]{output['name']}[/] {output['datatype']} {output['shape']}: {shown}")


def _duration(text: str | None, option: str = "--expires-in", *, zero: bool = False) -> float | None:
    """Seconds from "30m", "12h", "90d"; a lifetime must be positive, a grace (`zero`) may be 0."""
    if text is None:
        return None
    match = re.fullmatch(r"(-?\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if match is None or (not match[2] and float(match[1]) != 0):
        fail(f"{option} '{text}': use a number and a unit, e.g. 30m, 12h, 90d")
    seconds = float(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "": 0}[match[2]]
    if seconds < 0 or (seconds == 0 and not zero):
        fail(f"{option} '{text}' must be {'zero or more' if zero else 'more than zero'}, e.g. 30m, 12h, 90d")
    return seconds


def _when(timestamp: float | None) -> str:
    return dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S") if timestamp else "-"


def _limit(option: str, what: str) -> object:
    return typer.Option(option, help=f"{what}; 0 = unlimited.", show_default=False)


Rpm = Annotated[int | None, _limit("--rpm", "Requests per minute (a burst of N, then N/60 per second)")]
Tpm = Annotated[int | None, _limit("--tpm", "LLM tokens (prompt + completion) per minute")]
Tpd = Annotated[int | None, _limit("--tpd", "LLM tokens per day")]
Fps = Annotated[int | None, _limit("--fps", "Camera frames per second (more are skipped as rate_limited)")]
MaxSessions = Annotated[int | None, _limit("--max-sessions", "XR sessions open at once")]


def _limit_changes(**given: int | None) -> dict[str, int]:
    """The limit options given on the command line (absent ones are left out); a negative one is refused."""
    changes = {name: value for name, value in given.items() if value is not None}
    for name, value in changes.items():
        if value < 0:
            fail(f"--{name.replace('_', '-')} {value}: a limit must be 0 or more (0 = unlimited)")
    return changes


@keys_app.command("create")
def keys_create(
    scope: Annotated[
        list[str], typer.Option("--scope", "-s", help="A model name, '*' (all models) or 'admin'; repeatable.")
    ],
    name: Annotated[str, typer.Option(help="A label for people.")] = "",
    expires_in: Annotated[str | None, typer.Option(help="Lifetime, e.g. 30m, 12h, 90d (default: never).")] = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    tpd: Tpd = None,
    fps: Fps = None,
    max_sessions: MaxSessions = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the key.")] = False,
    data_dir: DataDir = default_data_dir(),
    database: DatabaseUrl = None,
) -> None:
    """Create an API key. The key is printed once; only its hash is stored."""
    from xrserve.security.keys import Limits

    limits = _limit_changes(rpm=rpm, tpm=tpm, tpd=tpd, fps=fps, max_sessions=max_sessions)
    with _store(data_dir, database) as db:
        try:
            token, record = db.key_store().create(name or "", scope, _duration(expires_in), Limits(**limits))
        except ValueError as exc:
            fail(str(exc))
    if quiet:
        print(token)
        return
    out.print(
        f"key id {record.id}, scopes {list(record.scopes)}, expires {_when(record.expires)}, "
        f"limits {record.limits.describe()}"
    )
    out.print("store it now, it is not shown again:")
    print(token)


@keys_app.command("list")
def keys_list(data_dir: DataDir = default_data_dir(), database: DatabaseUrl = None) -> None:
    """List API keys (never the secrets)."""
    table = Table("id", "name", "scopes", "created", "expires", "status", "rotated")
    table.add_column("limits", overflow="fold")  # never cut short on a narrow terminal
    with _store(data_dir, database) as db:
        keys = db.key_store().list()
    for key in keys:
        table.add_row(
            key.id,
            key.name,
            ", ".join(key.scopes),
            _when(key.created),
            _when(key.expires),
            key.status,
            key.rotation,
            key.limits.describe(),
        )
    out.print(table)


@keys_app.command("import")
def keys_import(
    from_data_dir: Annotated[
        Path,
        typer.Option("--from-data-dir", help="The data directory whose keys.db to copy.", exists=True, file_okay=False),
    ],
    database: DatabaseUrl = None,
    data_dir: DataDir = default_data_dir(),
) -> None:
    """Copy the keys of a data directory's keys.db into the --database PostgreSQL database, as they are.

    Digests only travel (the secrets were never stored): every key keeps working with the same secret,
    revoked and expired keys stay so. Keys already in the database are left alone; run it again safely.
    """
    from xrserve.security.keys import SqliteKeyTable
    from xrserve.security.postgres import PostgresKeyTable

    if not database:
        fail("give the PostgreSQL database to copy into: --database postgresql://... (or $XRSERVE_DATABASE)")
    source = from_data_dir / "keys.db"
    if not source.is_file():
        fail(f"{source} does not exist: nothing to import")
    sqlite = SqliteKeyTable(source)
    try:
        rows = [sqlite.credentials(record[0]) for record in sqlite.records()]
    finally:
        sqlite.close()
    with _store(data_dir, database) as db:
        table = db.key_store().table
        assert isinstance(table, PostgresKeyTable)
        added = table.copy_in([row for row in rows if row is not None])
    out.print(f"{added} of {len(rows)} keys copied into {db.where} ({len(rows) - added} were there already)")


@keys_app.command("update")
def keys_update(
    key_id: Annotated[str, typer.Argument(help="The key id shown by `keys list`.")],
    rpm: Rpm = None,
    tpm: Tpm = None,
    tpd: Tpd = None,
    fps: Fps = None,
    max_sessions: MaxSessions = None,
    data_dir: DataDir = default_data_dir(),
    database: DatabaseUrl = None,
) -> None:
    """Change a key's limits (only those given); a running server applies them within a second."""
    changes = _limit_changes(rpm=rpm, tpm=tpm, tpd=tpd, fps=fps, max_sessions=max_sessions)
    if not changes:
        fail("nothing to change: give at least one of --rpm, --tpm, --tpd, --fps, --max-sessions (0 = unlimited)")
    with _store(data_dir, database) as db:
        try:
            record = db.key_store().update_limits(key_id, **changes)
        except (LookupError, ValueError) as exc:
            fail(str(exc))
    out.print(f"key id {record.id}: limits {record.limits.describe()}")


@keys_app.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="The key id shown by `keys list`.")],
    grace: Annotated[
        str, typer.Option(help="How long the old secret keeps working, e.g. 0 (it leaked), 10m, 1h, 7d.")
    ] = "1h",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the new key.")] = False,
    data_dir: DataDir = default_data_dir(),
    database: DatabaseUrl = None,
) -> None:
    """A new secret for a key: same id, name, scopes and expiry; the old secret works until the grace ends."""
    with _store(data_dir, database) as db:
        try:
            token, record = db.key_store().rotate(key_id, _duration(grace, "--grace", zero=True) or 0.0)
        except (LookupError, ValueError) as exc:
            fail(str(exc))
    if quiet:
        print(token)
        return
    until = record.previous_until or 0.0
    old = f"works until {_when(until)}" if until > time.time() else "stops now (within a second on a running server)"
    out.print(f"key id {record.id} has a new secret; the old one {old}")
    out.print("store it now, it is not shown again:")
    print(token)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id shown by `keys list`.")],
    data_dir: DataDir = default_data_dir(),
    database: DatabaseUrl = None,
) -> None:
    """Revoke a key; every running server using the same keys stops accepting it within a second or two."""
    with _store(data_dir, database) as db:
        revoked = db.key_store().revoke(key_id)
    if not revoked:
        fail(f"no active key with id '{key_id}' (see `xrserve keys list`)")
    out.print(f"revoked {key_id}")


@audit_app.command("tail")
def audit_tail(
    lines: Annotated[int, typer.Option("-n", "--lines", help="How many of the newest records.", min=1)] = 20,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new records.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    data_dir: DataDir = default_data_dir(),
    database: DatabaseUrl = None,
) -> None:
    """Show the newest audit records: time, key, route, model, version, status, latency."""
    with _store(data_dir, database) as db:
        _audit_tail(db, data_dir, lines, follow, as_json)


def _audit_tail(db: Database, data_dir: Path, lines: int, follow: bool, as_json: bool) -> None:
    from dataclasses import asdict

    from xrserve.security.audit import tail

    path = db.audit_source()
    if not db.has_audit() and not follow:
        fail(f"no audit trail at {path}; has a server run with --data-dir {data_dir}?")
    records = tail(path, lines)
    while True:
        for record in records:
            if as_json:
                print(json.dumps(asdict(record)), flush=True)
            else:
                print(
                    f"{_when(record.time)}  {record.key_id or '-':10} {record.status:3}  {record.latency_ms:8.2f} ms  "
                    f"{record.method:4} {record.route}  {record.model or ''} {record.version or ''}",
                    flush=True,
                )
        if not follow:
            return
        last = records[-1].time if records else time.time()
        time.sleep(0.5)
        records = tail(path, after=last)


@audit_app.command("verify")
def audit_verify(data_dir: DataDir = default_data_dir(), database: DatabaseUrl = None) -> None:
    """Check the audit trail's hash chains and anchors: OK with counts, or the first altered or missing record."""
    from xrserve.security.audit import verify

    with _store(data_dir, database) as db:
        path = db.audit_source()
        if not db.has_audit():
            fail(f"no audit trail at {path}; has a server run with --data-dir {data_dir}?")
        result = verify(path)
        where = path if isinstance(path, Path) else db.where
    if result.problem:
        err.print(
            f"audit trail {where} FAILED verification: {result.problem}", highlight=False, markup=False, soft_wrap=True
        )
        raise typer.Exit(1)
    older = f"; {result.unchained} older records from before the chain (not verifiable)" if result.unchained else ""
    print(
        f"OK: {result.records - result.unchained} records in {result.chains} chains and {result.anchors} anchors "
        f"verified{older}"
    )


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version_: Annotated[str, typer.Argument(metavar="VERSION", help="Version to serve by default.")],
    url: Url = "http://127.0.0.1:8000",
    key: Key = None,
) -> None:
    """Make VERSION the default of NAME on a running server (kept across restarts)."""
    result = _call(url, key, "POST", f"/v2/repository/models/{name}/promote", json={"version": version_}).json()
    out.print(f"{name}: default version {result['default_version']}")


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="Model name.")], url: Url = "http://127.0.0.1:8000", key: Key = None
) -> None:
    """Go back to NAME's previous default version (with none promoted: the next older one)."""
    result = _call(url, key, "POST", f"/v2/repository/models/{name}/rollback").json()
    out.print(f"{name}: default version {result['default_version']}")


@models_app.command("unload")
def models_unload(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version_: Annotated[
        str | None, typer.Argument(metavar="[VERSION]", help="The version to unload; without it, every version.")
    ] = None,
    url: Url = "http://127.0.0.1:8000",
    key: Key = None,
) -> None:
    """Stop serving NAME (or one VERSION of it) once its queued and running requests are answered."""
    path = f"/v2/repository/models/{name}" + (f"/versions/{version_}" if version_ else "") + "/unload"
    result = _call(url, key, "POST", path).json()
    out.print(f"{name}{' version ' + version_ if version_ else ''}: {result['state']}")


@models_app.command("canary")
def models_canary(
    name: Annotated[str, typer.Argument(help="Model name.")],
    version_: Annotated[
        str | None, typer.Argument(metavar="[VERSION]", help="The version to try; without it, show the canary.")
    ] = None,
    percent: Annotated[
        float | None, typer.Option("--percent", "-p", help="Its share of the requests without a version (0 < P < 100).")
    ] = None,
    end: Annotated[bool, typer.Option("--end", help="End the canary: all traffic back to the stable version.")] = False,
    url: Url = "http://127.0.0.1:8000",
    key: Key = None,
) -> None:
    """Send P% of NAME's requests without a version to VERSION; rolled back by itself if it does worse."""
    path = f"/v2/repository/models/{name}/canary"
    if end:
        state = _call(url, key, "DELETE", path).json()
    elif version_ is not None:
        if percent is None:
            fail("give the canary's share with --percent P (0 < P < 100), e.g. --percent 20")
        state = _call(url, key, "POST", path, json={"version": version_, "percent": percent}).json()
    else:
        state = _call(url, key, "GET", path).json()
    if not state["active"]:
        out.print(
            f"{name}: no canary; requests without a version get version {state['default_version']}", soft_wrap=True
        )
        return
    out.print(
        f"{name}: canary version {state['version']} takes {state['percent']:g}% of the requests without a version "
        f"(stable: version {state['default_version']}); in the last {state['window_s']:g} s: canary "
        f"{state['canary_requests']} requests, error rate {state['canary_error_rate']:.2f}; stable "
        f"{state['stable_requests']} requests, error rate {state['stable_error_rate']:.2f}",
        soft_wrap=True,
    )


from xrserve.cli.certs import certs_app  # noqa: E402 - `xrserve certs dev`
from xrserve.cli.train import train_command  # noqa: E402 - `xrserve train` (training runs in-process)

app.command("train")(train_command)
app.add_typer(certs_app, name="certs")


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


def main(argv: list[str] | None = None) -> None:
    """Entry point: click's multi-line usage errors become one line naming the fix."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="xrserve", standalone_mode=False)
        if isinstance(code, int):  # click returns an Exit's code instead of raising it here
            sys.exit(code)
    except UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "xrserve"
        if exc.format_message():  # empty when click has just shown the help for a bare group
            err.print(
                f"{where}: error: {exc.format_message()} (see '{where} --help')",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
        sys.exit(2)
    except ClickException as exc:
        err.print(f"xrserve: error: {exc.format_message()}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)
    except typer.Abort:
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
