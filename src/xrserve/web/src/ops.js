// ops.js: the Operations view. The models and their versions with the admin actions (load,
// unload, promote, rollback), live charts computed from /metrics (request rate, latency
// quantiles, queue depth) and the newest audit records. Everything is polled every 2 s while
// the view is visible; what the page computed is on `window.xrserve.ops` for the tests.

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

const POLL_MS = 2000;
const WINDOW = 150; // samples the charts keep: 5 minutes at one per poll
const AUDIT_LIMIT = 50;
const MAX_MODEL_SERIES = 5; // per-model lines beside the total: the busiest ones, so a chart stays readable
// this page's own polling is monitoring, not traffic: left out of the request rate
const MONITORING_ROUTES = new Set(["/metrics", "/v1/audit"]);
const COLORS = ["#8ab4f8", "#7bd88f", "#f6c177", "#ff6b6b", "#c792ea", "#5fd7d7", "#e8e8ea"];

// ---------------------------------------------------------------- Prometheus text format

const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/y;

function unescapeLabel(value) {
  return value.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
}

function parseValue(text) {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  return Number(text); // "NaN" and anything malformed: NaN
}

/** One sample line, `name{a="x",b="y"} value [timestamp]`, as {name, labels, value}; null if malformed. */
function parseSample(line) {
  const nameEnd = line.search(/[{\s]/);
  if (nameEnd <= 0) return null;
  const labels = {};
  let pos = nameEnd;
  if (line[pos] === "{") {
    // a label value may hold braces and commas (route templates do): scan quoted values, not split
    pos += 1;
    for (;;) {
      LABEL.lastIndex = pos;
      const match = LABEL.exec(line);
      if (!match) break;
      labels[match[1]] = unescapeLabel(match[2]);
      pos = LABEL.lastIndex;
    }
    if (line[pos] !== "}") return null;
    pos += 1;
  }
  const value = line.slice(pos).trim().split(/\s+/)[0];
  return value ? { name: line.slice(0, nameEnd), labels, value: parseValue(value) } : null;
}

/** The exposition text as Map(name -> [{labels, value}]); comments (# HELP, # TYPE) are skipped. */
export function parseMetrics(text) {
  const metrics = new Map();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const sample = parseSample(line);
    if (!sample) continue;
    if (!metrics.has(sample.name)) metrics.set(sample.name, []);
    metrics.get(sample.name).push({ labels: sample.labels, value: sample.value });
  }
  return metrics;
}

// ---------------------------------------------------------------- what the charts show

const seriesKey = (labels) =>
  Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(",");

/**
 * How much each series of a counter grew since the previous snapshot, summed per group
 * (`groupOf(labels)`; null leaves a series out). A series the previous snapshot lacked
 * started at 0; one that went down was reset (a restarted server), so it grew by its value.
 */
function counterGrowth(previous, current, name, groupOf) {
  const before = new Map((previous.get(name) || []).map((s) => [seriesKey(s.labels), s.value]));
  const growth = new Map();
  for (const { labels, value } of current.get(name) || []) {
    const group = groupOf(labels);
    if (group === null) continue;
    const delta = value - (before.get(seriesKey(labels)) ?? 0);
    growth.set(group, (growth.get(group) || 0) + (delta < 0 ? value : delta));
  }
  return growth;
}

const sum = (values) => [...values].reduce((a, b) => a + b, 0);

/**
 * The q-quantile of cumulative buckets [{le, count}] (sorted, the last one +Inf), interpolated
 * linearly inside the bucket the rank falls in, as Prometheus' histogram_quantile does: a rank
 * in the +Inf bucket gives the highest finite bound. Null when nothing was observed.
 */
export function histogramQuantile(q, buckets) {
  if (buckets.length < 2 || buckets.at(-1).le !== Infinity) return null;
  let highest = 0; // counts must not decrease; sums of deltas across resets can make them
  const counts = buckets.map((b) => (highest = Math.max(highest, b.count)));
  const total = counts.at(-1);
  if (!(total > 0)) return null;
  const rank = q * total;
  let i = 0;
  while (i < buckets.length - 1 && counts[i] < rank) i += 1;
  if (i === buckets.length - 1) return buckets[i - 1].le;
  if (i === 0 && buckets[0].le <= 0) return buckets[0].le;
  const start = i === 0 ? 0 : buckets[i - 1].le;
  const below = i === 0 ? 0 : counts[i - 1];
  return start + ((buckets[i].le - start) * (rank - below)) / (counts[i] - below);
}

/** The quantiles (in ms) of what a histogram observed between two snapshots, all models together. */
function latencyQuantiles(previous, current, histogram, quantiles) {
  const growth = counterGrowth(previous, current, `${histogram}_bucket`, (labels) => labels.le);
  const buckets = [...growth].map(([le, count]) => ({ le: parseValue(le), count })).sort((a, b) => a.le - b.le);
  return quantiles.map((q) => {
    const seconds = histogramQuantile(q, buckets);
    return seconds === null ? null : seconds * 1000;
  });
}

function gaugeByModel(current, name) {
  const byModel = {};
  for (const { labels, value } of current.get(name) || []) {
    byModel[labels.model] = (byModel[labels.model] || 0) + value;
  }
  return byModel;
}

/** One point of every chart, from two snapshots `seconds` apart (without a previous one: gauges only). */
function sampleOf(previous, current, seconds) {
  const queue = gaugeByModel(current, "xrserve_queue_depth");
  const sample = { t: Date.now() / 1000, http: null, inference: null, latency: {}, queue };
  if (!previous || !(seconds > 0)) return sample;
  const http = counterGrowth(previous, current, "xrserve_http_requests_total", (labels) =>
    MONITORING_ROUTES.has(labels.route) ? null : "all",
  );
  sample.http = sum(http.values()) / seconds;
  const inference = counterGrowth(previous, current, "xrserve_inference_requests_total", (labels) => labels.model);
  sample.inference = Object.fromEntries([...inference].map(([model, count]) => [model, count / seconds]));
  const [queueP50, queueP99] = latencyQuantiles(previous, current, "xrserve_queue_seconds", [0.5, 0.99]);
  const [computeP50, computeP99] = latencyQuantiles(previous, current, "xrserve_compute_seconds", [0.5, 0.99]);
  sample.latency = { queueP50, queueP99, computeP50, computeP99 };
  return sample;
}

// ---------------------------------------------------------------- charts (uPlot)

const AXIS = { stroke: "#9aa0a6", grid: { stroke: "#2d3240", width: 1 }, ticks: { stroke: "#2d3240", width: 1 } };
const CHART_HEIGHT = 170;
const MIN_SPAN_S = 60; // the x axis shows at least this much, so the first seconds are not stretched across it

const clock = (seconds) => new Date(seconds * 1000).toLocaleTimeString();

/** A uPlot time-series chart whose lines may change: a new set of lines builds it again. */
class Chart {
  constructor(element, unit, { points = false, digits = null } = {}) {
    this.element = element;
    this.unit = unit;
    this.digits = digits; // null: 2 decimals below 10, else 1
    this.points = points; // latency has gaps while idle: points show the isolated values
    this.labels = null;
    this.plot = null;
    new ResizeObserver(() => this.fit()).observe(element);
  }

  size() {
    return { width: Math.max(200, this.element.clientWidth), height: CHART_HEIGHT };
  }

  fit() {
    if (this.plot && this.element.clientWidth > 0) this.plot.setSize(this.size());
  }

  /** `lines`: [{label, values}] over the times `xs` (seconds); a null value is a gap. */
  update(xs, lines) {
    const labels = lines.map((l) => l.label).join("\n");
    if (labels !== this.labels) this.build(lines);
    this.labels = labels;
    this.plot.setData([xs, ...lines.map((l) => l.values)]);
    // the legend shows the newest values, except while the pointer reads an older point
    if (this.plot.cursor.left < 0 && xs.length) this.plot.setLegend({ idx: xs.length - 1 });
  }

  build(lines) {
    this.plot?.destroy();
    const digits = (v) => this.digits ?? (v < 10 ? 2 : 1);
    const format = (_, v) => (v === null || v === undefined ? "–" : `${v.toFixed(digits(v))} ${this.unit}`.trim());
    const series = lines.map((line, i) => ({
      label: line.label,
      stroke: COLORS[i % COLORS.length],
      width: i === 0 ? 2 : 1.5,
      value: format,
      spanGaps: this.points,
      points: { show: this.points, size: 4 },
    }));
    const options = {
      ...this.size(),
      scales: {
        x: { time: true, range: (_, min, max) => [Math.min(min, max - MIN_SPAN_S), max] },
        y: { range: (_, min, max) => [0, Math.max(max * 1.1, 1)] },
      },
      axes: [AXIS, { ...AXIS, size: 50 }],
      series: [{ label: "time", value: (_, t) => (t === null ? "–" : clock(t)) }, ...series],
      cursor: { drag: { x: false, y: false } },
    };
    this.plot = new uPlot(options, [[], ...lines.map(() => [])], this.element);
  }
}

/** The models with the most in the window (never only zeros), busiest first. */
function busiest(samples, field) {
  const totals = {};
  for (const s of samples) {
    for (const [model, v] of Object.entries(s[field] || {})) totals[model] = (totals[model] || 0) + v;
  }
  return Object.keys(totals)
    .filter((m) => totals[m] > 0)
    .sort((a, b) => totals[b] - totals[a] || a.localeCompare(b))
    .slice(0, MAX_MODEL_SERIES)
    .sort();
}

function drawCharts(charts, samples) {
  const xs = samples.map((s) => s.t);
  // a model without a value in a sample had none of it then (0); a baseline sample has no rates (a gap)
  const byModel = (field, model) => samples.map((s) => (s[field] ? (s[field][model] ?? 0) : null));
  charts.rate.update(xs, [
    { label: "HTTP", values: samples.map((s) => s.http) },
    ...busiest(samples, "inference").map((m) => ({ label: m, values: byModel("inference", m) })),
  ]);
  const latency = (key) => samples.map((s) => s.latency[key] ?? null);
  charts.latency.update(xs, [
    { label: "queue p50", values: latency("queueP50") },
    { label: "queue p99", values: latency("queueP99") },
    { label: "compute p50", values: latency("computeP50") },
    { label: "compute p99", values: latency("computeP99") },
  ]);
  charts.queue.update(xs, [
    { label: "all models", values: samples.map((s) => sum(Object.values(s.queue))) },
    ...busiest(samples, "queue").map((m) => ({ label: m, values: byModel("queue", m) })),
  ]);
}

// ---------------------------------------------------------------- REST

/** fetch with the key; the parsed JSON, or an Error with the server's message in either error shape. */
async function call(app, path, { method = "GET", body, auth = true } = {}) {
  const headers = auth ? app.headers() : {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!response.ok) {
    const answer = await response.json().catch(() => ({}));
    // OIP routes answer {"error": "..."}, /v1 routes OpenAI's {"error": {"message": ...}}
    const message = typeof answer.error === "string" ? answer.error : answer.error?.message;
    const error = new Error(message || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return response.headers.get("content-type")?.includes("json") ? response.json() : response.text();
}

// ---------------------------------------------------------------- tables

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text ?? "";
  if (className) td.className = className;
  return td;
}

function button(action, title) {
  const b = document.createElement("button");
  b.dataset.action = action;
  b.textContent = action;
  b.title = title;
  return b;
}

const ACTION_TITLES = {
  load: "load new versions of this model from the repository",
  unload: "stop serving every version of this model",
  promote: "make this version the default for requests without a version",
  rollback: "back to the previous default version",
};

function modelRow(tbody, entry) {
  const row = tbody.insertRow();
  row.dataset.model = entry.name;
  row.dataset.version = entry.version ?? "";
  row.dataset.state = entry.state;
  cell(row, entry.name);
  cell(row, entry.version ?? "–");
  const state = cell(row, entry.state, "state");
  state.dataset.state = entry.state;
  if (entry.reason) state.title = entry.reason; // why it did not load: on hover, the table stays narrow
  const actions = cell(row, "", "actions");
  // a broken entry has no version to promote or unload: only loading it again can help
  const names = entry.version ? ["load", "unload", "promote", "rollback"] : ["load"];
  for (const name of names) actions.append(button(name, ACTION_TITLES[name]));
}

function auditRow(tbody, record) {
  const row = tbody.insertRow();
  row.dataset.status = record.status;
  if (record.status >= 400) row.className = "failed";
  cell(row, clock(record.time));
  cell(row, record.key_id ?? "–");
  cell(row, record.method);
  cell(row, record.route);
  cell(row, record.model ? `${record.model}${record.version ? ` v${record.version}` : ""}` : "");
  cell(row, String(record.status));
  cell(row, record.latency_ms.toFixed(1), "number");
  if (record.note) row.title = record.note;
}

/** One row across the table saying why it is empty. */
function messageRow(tbody, text) {
  tbody.replaceChildren();
  const row = tbody.insertRow();
  row.className = "message";
  const td = cell(row, text);
  td.colSpan = tbody.closest("table").tHead.rows[0].cells.length;
}

// ---------------------------------------------------------------- styles

// what only this view's elements need (style.css has the page's layout and tables), kept with its code
const STYLES = `
#view-ops .panel { min-width: 0; }
#view-ops td.number { text-align: right; font-family: ui-monospace, monospace; }
#view-ops td.state[data-state="READY"] { color: #7bd88f; }
#view-ops td.state[data-state="UNAVAILABLE"], #view-ops tr.failed td { color: #ff6b6b; }
#view-ops td.state[data-state="LOADING"] { color: #f6c177; }
#view-ops td.actions { white-space: nowrap; }
#view-ops td.actions button { font-size: 0.75rem; padding: 0.1rem 0.4rem; margin-right: 0.2rem; }
#view-ops tr.message td { color: #9aa0a6; font-style: italic; }
#view-ops #ops-models-wrap { max-height: 22rem; overflow-y: auto; }
#view-ops #ops-audit-wrap { max-height: 24rem; overflow-y: auto; }
#view-ops .stats[data-state="error"] { color: #ff6b6b; }
#view-ops .stats[data-state="ok"] { color: #7bd88f; }
#view-ops .chart { min-height: ${CHART_HEIGHT}px; }
#view-ops .u-legend { font-size: 0.75rem; color: #c8c8cc; }
#view-ops .u-legend .u-series > * { padding: 1px 4px; }
`;

function addStyles() {
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(STYLES);
  document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
}

/** Puts a table in a scrolling box, so a long list does not push the charts out of sight. */
function scrollable(table, id) {
  const wrap = document.createElement("div");
  wrap.id = id;
  table.replaceWith(wrap);
  wrap.append(table);
}

// ---------------------------------------------------------------- the view

export function setUp(app, $) {
  addStyles();
  scrollable($("ops-models"), "ops-models-wrap");
  scrollable($("ops-audit"), "ops-audit-wrap");
  const models = $("ops-models").tBodies[0];
  const audit = $("ops-audit").tBodies[0];
  const adminStatus = $("ops-admin-status");
  const metricsStatus = document.createElement("p");
  metricsStatus.id = "ops-metrics-status";
  metricsStatus.className = "stats";
  $("ops-chart-rate").after(metricsStatus);

  const charts = {
    rate: new Chart($("ops-chart-rate"), "req/s"),
    latency: new Chart($("ops-chart-latency"), "ms", { points: true }),
    queue: new Chart($("ops-chart-queue"), "", { digits: 0 }),
  };
  const ops = {
    samples: [],
    rate: null, // the latest HTTP requests per second (this page's polls left out)
    inference: {}, // the latest inference requests per second, per model
    latency: {},
    queue: {},
    models: [],
    audit: [],
    polls: 0,
    charts,
    parseMetrics, // for the tests, which check them against Prometheus' own
    histogramQuantile,
  };
  app.ops = ops;
  let previous = null; // the last /metrics snapshot and when it was taken
  let auditDenied = false;

  function say(element, text, state) {
    element.textContent = text;
    element.dataset.state = state;
  }

  async function refreshModels() {
    try {
      ops.models = await call(app, "/v2/repository/index", { method: "POST" });
    } catch (error) {
      ops.models = [];
      const denied = error.status === 401 || error.status === 403;
      messageRow(models, denied ? "the model list needs an admin key" : "the model list could not be read");
      say(adminStatus, `models: ${error.message}`, "error");
      return false;
    }
    models.replaceChildren();
    for (const entry of ops.models) modelRow(models, entry);
    return true;
  }

  // what each admin action sends, and how its answer reads
  const actions = {
    load: (name) => ({
      path: `/v2/repository/models/${encodeURIComponent(name)}/load`,
      done: (answer) => `${name}: ${answer.map((e) => `${e.version ? `v${e.version} ` : ""}${e.state}`).join(", ")}`,
    }),
    unload: (name) => ({
      path: `/v2/repository/models/${encodeURIComponent(name)}/unload`,
      confirm: `Stop serving every version of ${name}? Requests for it will fail until it is loaded again.`,
      done: () => `${name}: unloaded`,
    }),
    promote: (name, version) => ({
      path: `/v2/repository/models/${encodeURIComponent(name)}/promote`,
      body: { version },
      done: (answer) => `${name}: version ${answer.default_version} now serves requests without a version`,
    }),
    rollback: (name) => ({
      path: `/v2/repository/models/${encodeURIComponent(name)}/rollback`,
      done: (answer) => `${name}: rolled back, version ${answer.default_version} serves requests without a version`,
    }),
  };

  async function runAction(target) {
    const row = target.closest("tr");
    const { model, version } = row.dataset;
    const action = actions[target.dataset.action](model, version);
    if (action.confirm && !confirm(action.confirm)) return;
    const buttons = row.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true)); // one action at a time per row: no double clicks
    say(adminStatus, `${target.dataset.action} ${model}${version ? ` v${version}` : ""}…`, "busy");
    try {
      const answer = await call(app, action.path, { method: "POST", body: action.body });
      say(adminStatus, action.done(answer), "ok");
    } catch (error) {
      say(adminStatus, `${target.dataset.action} ${model}: ${error.message}`, "error");
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
    await refreshModels();
  }

  models.addEventListener("click", (event) => {
    const target = event.target.closest("button[data-action]");
    if (target) runAction(target);
  });

  async function sampleMetrics() {
    let current;
    try {
      current = parseMetrics(await call(app, "/metrics", { auth: false }));
    } catch (error) {
      previous = null; // the next answer starts a new baseline rather than spanning the outage
      say(metricsStatus, `metrics: ${error.message}`, "error");
      return;
    }
    const now = performance.now();
    const sample = sampleOf(previous?.metrics, current, previous ? (now - previous.at) / 1000 : 0);
    previous = { metrics: current, at: now };
    ops.samples.push(sample);
    if (ops.samples.length > WINDOW) ops.samples.shift();
    const { http: rate, inference, latency, queue } = sample;
    Object.assign(ops, { rate, inference, latency, queue });
    const rateText = rate === null ? "measuring…" : `${rate.toFixed(2)} requests/s`;
    say(metricsStatus, `${rateText} (polled every ${POLL_MS / 1000} s; /metrics and /v1/audit not counted)`, "");
    drawCharts(charts, ops.samples);
  }

  async function refreshAudit() {
    if (auditDenied) return; // asked once: a key without admin scope will not gain it while the page is open
    try {
      ops.audit = (await call(app, `/v1/audit?limit=${AUDIT_LIMIT}`)).data;
    } catch (error) {
      auditDenied = error.status === 401 || error.status === 403;
      messageRow(audit, `audit records: ${error.message}`);
      return;
    }
    audit.replaceChildren();
    for (const record of ops.audit) auditRow(audit, record);
  }

  // one poll at a time (the next is scheduled when this one ends), so a slow server is not asked twice over
  async function poll() {
    try {
      if ($("view-ops").hidden) {
        previous = null; // back in view, rates start from a fresh baseline instead of averaging the absence
      } else {
        await Promise.all([sampleMetrics(), refreshAudit()]);
        ops.polls += 1;
      }
    } finally {
      setTimeout(poll, POLL_MS); // a bug surfaces as an error in the console, and the charts keep going
    }
  }

  refreshModels().then((allowed) => allowed && say(adminStatus, `${ops.models.length} model versions`, ""));
  poll();
}
