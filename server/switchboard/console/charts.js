// Small SVG charts drawn here (nothing vendored): lines over time and bars with an interval.
// Labels are text nodes; colours are presentation attributes (the CSP allows no inline style).
import { el, fmt } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
export const COLOURS = ["#2f5fd0", "#d0702f", "#2f9d5f", "#a03fbf", "#c0392b", "#1f8a9a", "#7a6a1f", "#555"];
const W = 480;
const H = 190;
const PAD = { left: 48, right: 10, top: 10, bottom: 24 };

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function frame(title, names, attrs = {}) {
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
  const legend = el(
    "div",
    { class: "legend" },
    names.map((name, i) => {
      const swatch = svg("svg", { class: "swatch", viewBox: "0 0 10 10", width: 10, height: 10 });
      swatch.append(svg("rect", { width: 10, height: 10, fill: COLOURS[i % COLOURS.length] }));
      return el("span", {}, swatch, name);
    }),
  );
  const figure = el("figure", { class: "chart", ...attrs }, el("figcaption", {}, title), root, legend);
  return { figure, root };
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (value <= m * step) return m * step;
  return 10 * step;
}

function yAxis(root, max, format) {
  const plotH = H - PAD.top - PAD.bottom;
  for (const f of [0, 0.5, 1]) {
    const y = PAD.top + plotH * (1 - f);
    root.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: "axis", stroke: "#d9dde5" }));
    root.append(svg("text", { x: PAD.left - 4, y: y + 3, "text-anchor": "end" }, format(max * f)));
  }
}

/** Lines over time: series [{name, points: [[ms, value|null], …]}], x = the last `spanMs` up to now. */
export function lineChart({ title, series, spanMs, now = Date.now(), format = (v) => fmt(v, 1), id }) {
  const { figure, root } = frame(title, series.map((s) => s.name), { "data-chart": id || title });
  const values = series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => v !== null && Number.isFinite(v));
  const max = niceMax(Math.max(0, ...values));
  yAxis(root, max, format);
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + plotW * (1 - (now - t) / spanMs);
  const y = (v) => PAD.top + plotH * (1 - v / max);
  for (const label of [[spanMs, `-${Math.round(spanMs / 1000)} s`], [0, "now"]])
    root.append(svg("text", { x: x(now - label[0]), y: H - 6, "text-anchor": label[0] ? "start" : "end" }, label[1]));
  series.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length];
    let path = "";
    let pen = false;
    let count = 0;
    let peak = 0;
    const dots = []; // a lone point (one interval with TTFT data, say) draws no line: a dot shows it
    for (const [t, v] of s.points) {
      if (v === null || !Number.isFinite(v) || now - t > spanMs) {
        pen = false;
        continue;
      }
      path += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)} `;
      dots.push([x(t), y(v)]);
      pen = true;
      count += 1;
      peak = Math.max(peak, v);
    }
    for (const [cx, cy] of dots) root.append(svg("circle", { cx, cy, r: 2, fill: colour }));
    if (path) root.append(svg("path", { d: path, fill: "none", stroke: colour, "stroke-width": 2, "data-series": s.name, "data-points": count, "data-peak": peak }));
  });
  return figure;
}

/** Bars with an optional interval: bars [{name, value|null, low?, high?}]. */
export function barChart({ title, bars, format = (v) => fmt(v, 2), id }) {
  const { figure, root } = frame(title, bars.map((b) => b.name), { "data-chart": id || title });
  const max = niceMax(Math.max(0, ...bars.flatMap((b) => [b.value, b.high]).filter((v) => v !== null && v !== undefined && Number.isFinite(v))));
  yAxis(root, max, format);
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = plotW / Math.max(1, bars.length);
  const y = (v) => PAD.top + plotH * (1 - Math.min(v, max) / max);
  bars.forEach((b, i) => {
    const x0 = PAD.left + slot * i + slot * 0.2;
    const width = slot * 0.6;
    if (b.value !== null && b.value !== undefined && Number.isFinite(b.value)) {
      root.append(svg("rect", { x: x0, y: y(b.value), width, height: Math.max(0, PAD.top + plotH - y(b.value)), fill: COLOURS[i % COLOURS.length], "data-bar": b.name, "data-value": b.value }));
      root.append(svg("text", { x: x0 + width / 2, y: y(b.value) - 3, "text-anchor": "middle" }, format(b.value)));
    } else {
      root.append(svg("text", { x: x0 + width / 2, y: PAD.top + plotH - 3, "text-anchor": "middle" }, "no data"));
    }
    if (b.low !== undefined && b.low !== null && b.high !== undefined && b.high !== null) {
      const cx = x0 + width / 2;
      const lo = y(Math.max(0, b.low));
      const hi = y(b.high);
      for (const [a, c] of [[[cx, lo], [cx, hi]], [[cx - 6, lo], [cx + 6, lo]], [[cx - 6, hi], [cx + 6, hi]]])
        root.append(svg("line", { x1: a[0], y1: a[1], x2: c[0], y2: c[1], stroke: "#1d2330", "stroke-width": 1.5, class: "interval" }));
    }
    root.append(svg("text", { x: x0 + width / 2, y: H - 6, "text-anchor": "middle" }, b.name.length > 18 ? `${b.name.slice(0, 17)}…` : b.name));
  });
  return figure;
}
