"""Server settings: one object built by the CLI (or a test) and handed to the app."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xrserve.security.lockout import LockoutPolicy

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024


def default_data_dir() -> Path:
    return Path(os.environ.get("XRSERVE_DATA_DIR", Path.home() / ".local" / "share" / "xrserve"))


def lockout_from_env() -> LockoutPolicy:
    from xrserve.security.lockout import LockoutPolicy  # not at import: `xrserve --help` stays fast

    return LockoutPolicy.from_env()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = field(default_factory=default_data_dir)
    model_repositories: list[Path] = field(default_factory=list)
    builtins: bool = True
    dev: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    only_models: list[str] | None = None  # load just these (fast start for tests and benches)
    moderation: Path | None = None  # word/pattern lists replacing the shipped defaults
    frame_policy: str = "deadline"  # camera frames: "deadline" (latest-frame-wins, fair) or "fifo"
    #: which models play a talking character's parts (asr, vad, llm, tts, embeddings); unset: the built-ins
    npc_models: dict[str, str] = field(default_factory=dict)
    worlds_keep_s: float = 24 * 3600.0  # generated scenes and their jobs are deleted after this long
    #: HTTPS and WSS: a PEM certificate (chain) and its key; WebXR on a headset needs a secure origin
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: failed key attempts that lock a key id or an address, and for how long (env XRSERVE_LOCKOUT)
    lockout: LockoutPolicy = field(default_factory=lockout_from_env)
    #: where keys and the audit trail live: None for SQLite files in data_dir, or a PostgreSQL URL that every
    #: replica shares (`--database`, env XRSERVE_DATABASE)
    database: str | None = None
    #: where the models compute: "embedded" (this process and its workers) or "ray" (Ray Serve deployments)
    engine: str = "embedded"
    #: with engine "ray": the cluster to join (e.g. "auto", "ray://head:10001"); None starts a local instance
    ray_address: str | None = None

    def __post_init__(self) -> None:
        roles = ("asr", "vad", "llm", "tts", "embeddings")
        unknown = [role for role in self.npc_models if role not in roles]
        if unknown:
            raise ValueError(f"--npc-model: {unknown} is not a part of a character; the parts are {', '.join(roles)}")
        if self.engine not in ("embedded", "ray"):
            raise ValueError(f"--engine must be 'embedded' or 'ray', not '{self.engine}'")
        if self.ray_address and self.engine != "ray":
            raise ValueError("--ray-address needs --engine ray")
        if self.frame_policy not in ("deadline", "fifo"):
            raise ValueError(f"--frame-policy must be 'deadline' or 'fifo', not '{self.frame_policy}'")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together: the certificate and its private key (PEM files)")
        from xrserve.security.storage import check_database_url  # not at import: `xrserve --help` stays fast

        check_database_url(self.database)
        if self.dev and not is_loopback(self.host):
            raise ValueError(
                f"--dev allows requests without an API key, so it only works on a loopback address; "
                f"--host {self.host} is not one. Create a key with `xrserve keys create` instead."
            )

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def anonymous_allowed(self) -> bool:
        return self.dev and is_loopback(self.host)

    @property
    def worlds_dir(self) -> Path:
        return self.data_dir / "worlds"
