"""Starting or joining Ray, and turning a model version into a Serve application.

A local instance is started when no `--ray-address` is given: dashboard and usage reporting off
(nothing leaves the machine, nothing is downloaded), the object store sized for a small machine
(our tensors are camera frames and token lists, not model weights). Serve runs without its HTTP
proxy: the xrserve front is the HTTP and WebSocket server, and reaches the models by handles.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from xrserve.core.config import ModelConfig

NAMESPACE = "xrserve"
DEPLOYMENT = "model"
OBJECT_STORE_SHARE = 0.05  # of the machine's memory, within the bounds below
OBJECT_STORE_MIN, OBJECT_STORE_MAX = 128 << 20, 2 << 30
HEALTH_CHECK_PERIOD_S = 5.0
#: Serve's defaults put a thread hop on each side of every call: the handle's router on a loop of its own
#: in the caller, and the replica's code on a loop of its own in the replica. Both off, a handle round
#: trip here went from 8.7 to 5.4 ms at p50 (bench/scale.py; a bare Ray actor call is 2.8 ms). Our
#: replica never blocks its loop for long: models compute in their own thread.
SERVE_TUNING = {"RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0", "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}


def app_name(name: str, version: str) -> str:
    """One Serve application per model version, so versions deploy, scale and go away independently."""
    return f"{name}.v{version}"


def object_store_bytes() -> int:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(min(max(total * OBJECT_STORE_SHARE, OBJECT_STORE_MIN), OBJECT_STORE_MAX))


def connect(address: str | None) -> bool:
    """Join the cluster at `address`, or start a local instance; True when this process started it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # set before ray is imported: no usage reports
    if address and "RAY_AUTH_MODE" not in os.environ and _token_available():
        # Ray enables token authentication by itself only for a cluster it starts; joining one with a token
        # at hand (~/.ray/auth_token, RAY_AUTH_TOKEN[_PATH]) must send it
        os.environ["RAY_AUTH_MODE"] = "token"
    for name, value in SERVE_TUNING.items():  # a local instance's processes inherit them; set them on other nodes
        os.environ.setdefault(name, value)
    import ray
    from ray import serve

    for noisy in ("ray", "ray.serve"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(
                address="local",  # never attach by accident to another instance on this machine
                namespace=NAMESPACE,
                include_dashboard=False,
                object_store_memory=object_store_bytes(),
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
            started = True
    serve.start(http_options={"location": "NoServer"})
    return started


def gcs_address() -> str:
    """The cluster's address, as another front or `ray start --address` joins it (host:port of its GCS)."""
    import ray

    return str(ray.get_runtime_context().gcs_address)


def _token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return True
    return (Path.home() / ".ray" / "auth_token").is_file()


def deployment_options(config: ModelConfig) -> dict[str, Any]:
    """Serve's options from `[scaling]`: replicas or autoscaling, resources, how much one replica holds."""
    scaling = config.scaling
    options: dict[str, Any] = {
        "name": DEPLOYMENT,
        "ray_actor_options": {"num_cpus": scaling.cpus, "num_gpus": scaling.gpus},
        # the replica's own queue decides what waits and what is dropped, so Serve hands everything in
        "max_ongoing_requests": scaling.max_ongoing_requests
        or config.queue_size + config.max_streams * config.instances,
        "health_check_period_s": HEALTH_CHECK_PERIOD_S,
    }
    if scaling.max_replicas is not None:
        options["autoscaling_config"] = {
            "min_replicas": scaling.min_replicas,
            "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": scaling.target_ongoing_requests,
        }
    else:
        options["num_replicas"] = scaling.replicas or 1
    return options


def deploy(config: ModelConfig, frame_policy: str) -> Any:
    """Deploy one model version (blocking: run it in a thread) and return its handle once it is running.

    A front that finds the application already running (another front deployed it) uses it as it is.
    """
    from ray import serve

    from xrserve.engines.ray.replica import ModelReplica

    name = app_name(config.name, config.version)
    running = serve.status().applications.get(name)
    if running is not None and running.status == "RUNNING":
        return serve.get_app_handle(name)
    app = serve.deployment(ModelReplica).options(**deployment_options(config))  # type: ignore[attr-defined]
    try:
        return serve.run(app.bind(config.model_dump_json(), frame_policy), name=name, route_prefix=None)
    except RuntimeError as exc:  # Serve says only that the deployment failed: the replica's error says why
        failed = serve.status().applications.get(name)
        deployment = failed.deployments.get(DEPLOYMENT) if failed is not None else None
        if deployment is None or not deployment.message:
            raise
        raise RuntimeError(_replica_error(deployment.message)) from exc


def _replica_error(message: str) -> str:
    """The last line of the replica's traceback (the model's own error), not Serve's preamble."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else message


def delete(name: str, version: str) -> None:
    from ray import serve

    serve.delete(app_name(name, version))


def deployment_status() -> dict[str, dict[str, Any]]:
    """Per application: its status and message, and its deployment's replica counts by state."""
    from ray import serve

    status: dict[str, dict[str, Any]] = {}
    for name, app in serve.status().applications.items():
        deployment = app.deployments.get(DEPLOYMENT)
        status[name] = {
            "status": getattr(app.status, "value", str(app.status)),
            "message": app.message or (deployment.message if deployment else ""),
            "replicas": {str(k): v for k, v in (deployment.replica_states if deployment else {}).items()},
        }
    return status


def disconnect(started_here: bool) -> None:
    """Stop Ray if this process started it; a front that joined a cluster leaves its applications running.

    Other fronts may be using them: the cluster's deployments are its operator's (unload a model
    through the admin API to delete its application).
    """
    import ray
    from ray import serve

    if started_here:
        serve.shutdown()
    ray.shutdown()
