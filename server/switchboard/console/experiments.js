// Experiments: create one (variants, weights, sticky), watch its live report per variant, conclude it.
// Only the /admin/experiments endpoints; a report's unknown fields are shown in the table, never relied on.
import { request } from "./api.js";
import { barChart, lineChart } from "./charts.js";
import { $, clear, confirmed, el, fmt, notify } from "./dom.js";

const REFRESH_MS = 3000;
const SPAN_MS = 5 * 60 * 1000;
const CREATED = "switchboard.experiments";
let timer = null;
const history = new Map(); // experiment -> [{t, rows}]

export function init() {
  $("#exp-form").addEventListener("submit", (event) => {
    event.preventDefault();
    create();
  });
  $("#exp-select").addEventListener("change", () => refresh());
  $("#exp-refresh").addEventListener("click", () => refresh());
}

export async function show() {
  await loadNames();
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
}

export function hide() {
  clearInterval(timer);
  timer = null;
}

function created() {
  try {
    return JSON.parse(sessionStorage.getItem(CREATED) || "[]");
  } catch (_) {
    return [];
  }
}

/** Experiment names: the registry view lists them; names made in this tab are kept too. */
async function loadNames(select) {
  const names = new Set(created());
  try {
    const view = await request("/admin/adapters");
    for (const name of view.experiments || []) names.add(name);
  } catch (err) {
    notify(`experiments: ${err.message}`);
  }
  const box = $("#exp-select");
  const keep = select || box.value;
  clear(box);
  for (const name of [...names].sort()) box.append(el("option", { value: name }, name));
  if (keep && names.has(keep)) box.value = keep;
}

function parseVariants(text) {
  const variants = {};
  for (const part of text.split(/[,\n]/).map((p) => p.trim()).filter(Boolean)) {
    const [ref, weight] = part.split("=").map((s) => s.trim());
    variants[ref] = weight === undefined ? 1 : Number(weight);
  }
  return variants;
}

async function create() {
  const name = $("#exp-name").value.trim();
  const variants = parseVariants($("#exp-variants").value);
  const sticky = $("#exp-sticky").value;
  const described = Object.entries(variants).map(([ref, w]) => `${ref} ${w}`).join(", ");
  if (!confirmed(`Create (or replace) experiment ${name}: ${described}, sticky ${sticky}?`)) return;
  try {
    await request(`/admin/experiments/${encodeURIComponent(name)}`, { method: "PUT", body: { variants, sticky } });
  } catch (err) {
    notify(err.message);
    return;
  }
  sessionStorage.setItem(CREATED, JSON.stringify([...new Set([...created(), name])]));
  history.delete(name);
  notify(`experiment ${name} running: send requests with model "${name}"`, "notice");
  await loadNames(name);
  refresh();
}

async function conclude(name, rows) {
  const winner = $("#exp-winner").value;
  const alias = $("#exp-alias").value.trim();
  const what = alias ? ` and point alias ${alias} at ${winner}` : "";
  if (!confirmed(`Conclude ${name}: stop the experiment${what}? Requests naming ${name} will get a 404.`)) return;
  try {
    if (alias) await request(`/admin/aliases/${encodeURIComponent(alias)}`, { method: "PUT", body: { target: winner } });
    await request(`/admin/experiments/${encodeURIComponent(name)}`, { method: "DELETE" });
  } catch (err) {
    notify(err.message);
    return;
  }
  sessionStorage.setItem(CREATED, JSON.stringify(created().filter((n) => n !== name)));
  notify(`concluded ${name}${what}`, "notice");
  await loadNames();
  refresh();
}

async function refresh() {
  const name = $("#exp-select").value;
  const box = $("#exp-report");
  if (!name) {
    clear(box).append(el("p", { class: "muted" }, "no experiment yet: create one above"));
    return;
  }
  let report;
  try {
    report = await request(`/admin/experiments/${encodeURIComponent(name)}`);
  } catch (err) {
    notify(err.message);
    return;
  }
  const now = Date.now();
  const points = history.get(name) || [];
  points.push({ t: now, rows: report.variants || [] });
  history.set(name, points.filter((p) => now - p.t <= SPAN_MS));
  $("#exp-updated").textContent = `updated ${new Date(now).toLocaleTimeString()}`;
  render(name, report, now);
}

function render(name, report, now) {
  const rows = report.variants || [];
  // what the user typed into the conclude form survives the refresh
  const typed = { alias: $("#exp-alias")?.value || "", winner: $("#exp-winner")?.value || "" };
  const box = clear($("#exp-report"));
  const names = rows.map((r) => r.variant);
  const over = (f) => names.map((variant) => ({ name: variant, points: history.get(name).map((p) => [p.t, f(p.rows.find((r) => r.variant === variant))]) }));
  const num = (v) => (typeof v === "number" ? v : null);
  box.append(
    el("p", {}, `sticky: ${report.sticky ?? "–"} · `, report.significant ? "significant" : "not significant", ` · p = ${fmt(report.p_value, 3)} · ${report.recommendation ?? ""}`),
    el(
      "div",
      { class: "charts" },
      barChart({ title: "Requests", bars: rows.map((r) => ({ name: r.variant, value: num(r.requests) })), format: (v) => fmt(v, 0), id: "requests" }),
      lineChart({ title: "Requests over time", series: over((r) => (r ? num(r.requests) : null)), spanMs: SPAN_MS, now, format: (v) => fmt(v, 0), id: "requests-over-time" }),
      barChart({ title: "Error rate", bars: rows.map((r) => ({ name: r.variant, value: r.requests ? r.errors / r.requests : null })), format: (v) => fmt(v * 100, 0, "%"), id: "errors" }),
      barChart({ title: "Latency p50 (whisker: p95), s", bars: rows.map((r) => ({ name: r.variant, value: num(r.latency_p50), low: num(r.latency_p50), high: num(r.latency_p95) })), format: (v) => fmt(v, 2), id: "latency" }),
      barChart({ title: "Mean feedback (always-valid interval)", bars: rows.map((r) => ({ name: r.variant, value: num(r.feedback_mean), low: r.feedback_interval ? r.feedback_interval[0] : null, high: r.feedback_interval ? r.feedback_interval[1] : null })), format: (v) => fmt(v, 2), id: "feedback" }),
    ),
  );
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  box.append(
    el(
      "table",
      { id: "exp-table" },
      el("thead", {}, el("tr", {}, keys.map((k) => el("th", {}, k)))),
      el(
        "tbody",
        {},
        rows.map((r) =>
          el(
            "tr",
            { "data-variant": r.variant },
            keys.map((k) => el("td", { class: typeof r[k] === "number" ? "num" : "" }, typeof r[k] === "number" ? fmt(r[k], Number.isInteger(r[k]) ? 0 : 3) : Array.isArray(r[k]) ? r[k].map((v) => fmt(v, 2)).join(" – ") : r[k] ?? "–")),
          ),
        ),
      ),
    ),
  );
  const winner = el("select", { id: "exp-winner" }, names.map((n) => el("option", { value: n }, n)));
  if (names.includes(typed.winner)) winner.value = typed.winner;
  else if (report.candidate && names.includes(report.candidate)) winner.value = report.candidate;
  box.append(
    el(
      "div",
      { class: "inline-form" },
      el("strong", {}, "Conclude"),
      el("label", {}, "winner ", winner),
      el("label", {}, "promote alias ", el("input", { id: "exp-alias", placeholder: "optional", value: typed.alias })),
      el("button", { type: "button", class: "danger", onclick: () => conclude(name, rows) }, "Conclude…"),
    ),
  );
}
