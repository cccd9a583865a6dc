// Traffic: per-adapter request rate, tokens/s and TTFT, from this server's own /metrics (Prometheus text,
// parsed here), sampled every few seconds from the moment the console opens (whichever page shows); rates
// are over each sample interval.
import { request } from "./api.js";
import { lineChart } from "./charts.js";
import { $, clear, el, fmt, notify } from "./dom.js";

const SAMPLE_MS = 2000;
const SPAN_MS = 5 * 60 * 1000;
const KEEP_MS = 10 * 60 * 1000;
let visible = false;
let samples = []; // [{t, totals: Map(series -> {requests, errors, tokens, ttftSum, ttftCount})}]

export function init() {
  sample();
  setInterval(sample, SAMPLE_MS);
}

export function show() {
  visible = true;
  if (samples.length) render(Date.now());
}

export function hide() {
  visible = false;
}

/** Prometheus text exposition -> [{name, labels, value}] (comments skipped, label escapes undone). */
export function parseMetrics(text) {
  const out = [];
  const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
  const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (const row of text.split("\n")) {
    if (!row || row.startsWith("#")) continue;
    const m = line.exec(row);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(label))
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

function seriesName(labels) {
  const ref = labels.version ? `${labels.adapter}@${labels.version}` : labels.adapter;
  return labels.experiment ? `${ref} (${labels.experiment}/${labels.variant})` : ref;
}

function totals(metrics) {
  const by = new Map();
  const get = (labels) => {
    const key = seriesName(labels);
    if (!by.has(key)) by.set(key, { requests: 0, errors: 0, tokens: 0, ttftSum: 0, ttftCount: 0 });
    return by.get(key);
  };
  for (const { name, labels, value } of metrics) {
    if (name === "switchboard_requests_total") {
      get(labels).requests += value;
      if (!labels.status.startsWith("2")) get(labels).errors += value;
    } else if (name === "switchboard_completion_tokens_total") get(labels).tokens += value;
    else if (name === "switchboard_time_to_first_token_seconds_sum") get(labels).ttftSum += value;
    else if (name === "switchboard_time_to_first_token_seconds_count") get(labels).ttftCount += value;
  }
  return by;
}

async function sample() {
  let text;
  try {
    text = await request("/metrics", { kind: "none" });
  } catch (err) {
    if (visible) notify(`metrics: ${err.message}`);
    return;
  }
  const now = Date.now();
  samples.push({ t: now, totals: totals(parseMetrics(text)) });
  samples = samples.filter((s) => now - s.t <= KEEP_MS);
  if (visible) render(now);
}

/** Per series, one point per interval between consecutive samples: f(previous, current, seconds). */
function rates(f) {
  const names = new Set(samples.flatMap((s) => [...s.totals.keys()]));
  return [...names].sort().map((name) => {
    const points = [];
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1].totals.get(name);
      const b = samples[i].totals.get(name);
      if (!b) continue;
      const zero = { requests: 0, errors: 0, tokens: 0, ttftSum: 0, ttftCount: 0 };
      points.push([samples[i].t, f(a || zero, b, (samples[i].t - samples[i - 1].t) / 1000)]);
    }
    return { name, points };
  });
}

function render(now) {
  const box = clear($("#traffic-charts"));
  const requests = rates((a, b, s) => (b.requests - a.requests) / s);
  const tokens = rates((a, b, s) => (b.tokens - a.tokens) / s);
  const ttft = rates((a, b) => (b.ttftCount > a.ttftCount ? (b.ttftSum - a.ttftSum) / (b.ttftCount - a.ttftCount) : null));
  const last = samples[samples.length - 1].totals;
  box.append(
    el(
      "div",
      { class: "charts" },
      lineChart({ title: "Requests/s", series: requests, spanMs: SPAN_MS, now, format: (v) => fmt(v, 2), id: "requests" }),
      lineChart({ title: "Completion tokens/s", series: tokens, spanMs: SPAN_MS, now, format: (v) => fmt(v, 1), id: "tokens" }),
      lineChart({ title: "Mean TTFT (ms)", series: ttft.map((s) => ({ ...s, points: s.points.map(([t, v]) => [t, v === null ? null : v * 1000]) })), spanMs: SPAN_MS, now, format: (v) => fmt(v, 0), id: "ttft" }),
    ),
    el(
      "table",
      { id: "traffic-totals" },
      el("thead", {}, el("tr", {}, ["adapter", "requests", "errors", "completion tokens", "mean TTFT"].map((h) => el("th", {}, h)))),
      el(
        "tbody",
        {},
        [...last.entries()].sort().map(([name, v]) =>
          el(
            "tr",
            { "data-series": name },
            el("td", {}, name),
            el("td", { class: "num requests" }, String(v.requests)),
            el("td", { class: "num" }, String(v.errors)),
            el("td", { class: "num" }, String(v.tokens)),
            el("td", { class: "num" }, v.ttftCount ? fmt((v.ttftSum / v.ttftCount) * 1000, 0, " ms") : "–"),
          ),
        ),
      ),
    ),
  );
}
