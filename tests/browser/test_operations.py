"""The web client's Operations view (#ops): models with admin actions, live charts from /metrics, the audit."""

from __future__ import annotations

import numpy as np
from playwright.sync_api import Page

from tests.conftest import Server, cli, infer_body

CHARTS = ("#ops-chart-rate", "#ops-chart-latency", "#ops-chart-queue")


def open_ops(page: Page, server: Server, key: str) -> None:
    """The ops view with `key` entered (the page reloads with it stored) and its session connected."""
    page.goto(server.url + "/web/#ops")
    page.fill("#key", key)
    page.dispatch_event("#key", "change")
    page.wait_for_selector("#status[data-state=connected]", timeout=30_000)
    # the first load had no key: the browser logs its refused requests (the model list, the audit),
    # which is the page working as meant; anything else stays to fail the test
    errors = page.console_errors  # type: ignore[attr-defined]
    errors[:] = [e for e in errors if "the server responded with a status of 401" not in e]


def burst(server: Server) -> None:
    """Real traffic while the page watches: model listings and MiniLM embeddings."""
    with server.client() as client:
        for _ in range(30):
            assert client.get("/v1/models").status_code == 200
        for i in range(10):
            body = infer_body("text", np.array([f"operations {i}"]), "BYTES")
            assert client.post("/v2/models/minilm/infer", json=body).status_code == 200


def test_operations_view_charts_traffic_and_runs_admin_actions(page: Page, server: Server) -> None:
    open_ops(page, server, server.admin_key)
    for model in ("minilm", "smollm2"):
        page.wait_for_selector(f"#ops-models tbody tr[data-model={model}][data-state=READY]", timeout=30_000)
    page.wait_for_function("window.xrserve.ops.rate !== null", timeout=15_000)  # a baseline and one rate
    before = page.evaluate("window.xrserve.ops.samples.length")

    burst(server)
    # 40 requests land within a few 2 s polls: at least one poll sees several per second
    page.wait_for_function(
        f"window.xrserve.ops.samples.slice({before}).some(s => s.http > 3 && s.inference?.minilm > 0)",
        timeout=20_000,
    )
    page.wait_for_function(
        f"window.xrserve.ops.samples.slice({before}).some(s => s.latency.computeP50 > 0)", timeout=10_000
    )
    for chart in CHARTS:
        assert page.locator(f"{chart} canvas").count() >= 1
    assert "minilm" in page.inner_text("#ops-chart-rate")  # a per-model line beside the total, in the legend

    # the audit table shows the burst
    page.wait_for_selector("#ops-audit tbody tr[data-status='200'] td:text-is('/v2/models/{model_name}/infer')")
    assert 0 < page.locator("#ops-audit tbody tr").count() <= 50

    # admin actions: make the current version the default, then roll that back (the server is shared)
    row = "#ops-models tbody tr[data-model=minilm][data-version='1']"
    page.click(f"{row} button[data-action=promote]")
    page.wait_for_selector("#ops-admin-status[data-state=ok]", timeout=15_000)
    assert "minilm: version 1 now serves requests without a version" in page.inner_text("#ops-admin-status")
    page.click(f"{row} button[data-action=rollback]")
    page.wait_for_selector("#ops-admin-status[data-state=ok] >> text=rolled back", timeout=15_000)
    assert not page.console_errors  # type: ignore[attr-defined]


def test_parser_and_quantiles_agree_with_prometheus(page: Page, server: Server) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    open_ops(page, server, server.admin_key)
    page.wait_for_function("window.xrserve.ops !== undefined")
    text, parsed = page.evaluate(
        """async () => {
            const text = await (await fetch("/metrics")).text();
            const parsed = [...window.xrserve.ops.parseMetrics(text)].flatMap(
                ([name, samples]) => samples.map((s) => [name, s.labels, String(s.value)]));
            return [text, parsed];
        }"""
    )

    def key(name: str, labels: dict, value: float) -> tuple:
        return name, tuple(sorted(labels.items())), float(value)

    expected = {
        key(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples
    }
    assert {key(*sample) for sample in parsed} == expected
    assert any(name == "xrserve_http_requests_total" and "{" in dict(labels)["route"] for name, labels, _ in expected)

    # histogram_quantile: linear inside the bucket; in the +Inf bucket, the highest finite bound; nothing: null
    quantiles = page.evaluate(
        """() => {
            const q = window.xrserve.ops.histogramQuantile;
            return [
                q(0.5, [{le: 0.1, count: 0}, {le: 0.2, count: 10}, {le: Infinity, count: 10}]),
                q(0.25, [{le: 1, count: 4}, {le: 3, count: 8}, {le: Infinity, count: 8}]),
                q(0.99, [{le: 1, count: 5}, {le: Infinity, count: 10}]),
                q(0.5, [{le: 1, count: 0}, {le: Infinity, count: 0}]),
            ];
        }"""
    )
    assert abs(quantiles[0] - 0.15) < 1e-12
    assert quantiles[1] == 0.5 and quantiles[2] == 1 and quantiles[3] is None
    assert not page.console_errors  # type: ignore[attr-defined]


def test_a_key_without_admin_scope_still_gets_the_charts(page: Page, server: Server) -> None:
    key = cli("keys", "create", "--scope", "minilm", "--quiet", data_dir=server.data_dir).stdout.strip()
    open_ops(page, server, key)
    page.wait_for_selector("#ops-admin-status[data-state=error]", timeout=15_000)
    assert "lacks the scope admin" in page.inner_text("#ops-admin-status")
    page.wait_for_selector("#ops-audit tbody tr.message >> text=lacks the scope admin")
    page.wait_for_function("window.xrserve.ops.rate !== null", timeout=15_000)  # /metrics needs no key
    for chart in CHARTS:
        assert page.locator(f"{chart} canvas").count() >= 1
    # the browser logs the two refused requests, asked once each; nothing else went wrong
    errors = page.console_errors  # type: ignore[attr-defined]
    assert len(errors) == 2 and all("the server responded with a status of 403" in e for e in errors), errors
