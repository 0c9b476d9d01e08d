"""Prometheus metrics, one registry per server, labelled by model and version."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self) -> None:
        #: requests inside the server right now (counted by the transports): a forming batch waits
        #: for company only while some other request is already on its way in
        self.in_server = 0
        disable_created_metrics()  # type: ignore[no-untyped-call]  # the *_created series only add noise
        self.registry = CollectorRegistry()
        labels = ("model", "version")
        r = self.registry
        self.requests = Counter("xrserve_inference_requests", "Inference requests submitted", labels, registry=r)
        self.failures = Counter(
            "xrserve_inference_failures", "Inference requests that failed", (*labels, "reason"), registry=r
        )
        self.queue_time = Histogram(
            "xrserve_queue_seconds",
            "Time from submission to the start of compute",
            labels,
            buckets=_SECONDS,
            registry=r,
        )
        self.compute_time = Histogram(
            "xrserve_compute_seconds", "Time one batch spent in the model", labels, buckets=_SECONDS, registry=r
        )
        self.request_time = Histogram(
            "xrserve_request_seconds",
            "Time from submission to the answer (queue and compute), per answered request",
            labels,
            buckets=_SECONDS,
            registry=r,
        )
        self.canary_percent = Gauge(
            "xrserve_canary_percent",
            "Share of the requests without a version each version gets while a canary runs (0/100 after it)",
            labels,
            registry=r,
        )
        self.canary_rollbacks = Counter(
            "xrserve_canary_rollbacks", "Canaries ended automatically: worse than stable", labels, registry=r
        )
        self.batch_size = Histogram(
            "xrserve_batch_size", "Requests per executed batch", labels, buckets=_BATCH, registry=r
        )
        self.queue_depth = Gauge("xrserve_queue_depth", "Requests waiting in the queue", labels, registry=r)
        self.restarts = Counter("xrserve_worker_restarts", "Model worker processes restarted", labels, registry=r)
        self.active_streams = Gauge("xrserve_active_streams", "Streams being generated now", labels, registry=r)
        self.generated_tokens = Counter(
            "xrserve_generated_tokens", "Tokens (or chunks) streamed out", labels, registry=r
        )
        self.first_chunk_time = Histogram(
            "xrserve_time_to_first_token_seconds",
            "Submission to the first streamed output",
            labels,
            buckets=_SECONDS,
            registry=r,
        )
        self.hop_time = Histogram(
            "xrserve_hop_seconds",
            "Ray engine: from the front sending a request to its replica receiving it (wall clocks)",
            labels,
            buckets=_SECONDS,
            registry=r,
        )
        self.http_requests = Counter(
            "xrserve_http_requests", "HTTP requests by route and status", ("route", "status"), registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


REPLICA_PREFIX = "xrserve_replica_"


def replica_series(texts: dict[str, str]) -> bytes:
    """Several replicas' series as one exposition: renamed `xrserve_replica_*`, labelled `replica`.

    Renamed because the front's own families carry the same names, and a name may have only one
    HELP/TYPE in an exposition; each family's samples from all replicas are listed together.
    """
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, tuple[str, str, list[str]]] = {}
    for replica, text in sorted(texts.items()):
        for family in text_string_to_metric_families(text):
            name = family.name.replace("xrserve_", REPLICA_PREFIX, 1)
            _, _, lines = families.setdefault(name, (family.type, family.documentation, []))
            for sample in family.samples:
                labels = {"replica": replica, **sample.labels}
                rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                lines.append(
                    f"{sample.name.replace('xrserve_', REPLICA_PREFIX, 1)}{{{rendered}}} {_number(sample.value)}"
                )
    out = []
    for name, (kind, documentation, lines) in families.items():
        if lines:
            header = f"{name}_total" if kind == "counter" else name  # text format 0.0.4 names a counter so
            out += [f"# HELP {header} {documentation}", f"# TYPE {header} {kind}", *lines]
    return ("\n".join(out) + "\n").encode() if out else b""


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return ("+Inf" if value > 0 else "-Inf") if math.isinf(value) else repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
