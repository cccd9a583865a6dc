// Playground: one conversation sent to 2–4 targets at once, each answer streamed into its own column.
import { errorOf, headers, keys, request } from "./api.js";
import { $, $$, clear, el, fmt, notify } from "./dom.js";

const HISTORY = "switchboard.playHistory";
const HISTORY_SIZE = 10;

let baseModel = null; // the base model's id, for the `base` target
let turns = []; // [{user, answers: {target: text}}]: the conversation so far
let controllers = []; // AbortControllers of the streams running now

export function init() {
  $("#play-form").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  $("#play-stop").addEventListener("click", stop);
  $("#play-new").addEventListener("click", () => {
    stop();
    turns = [];
    clear($("#play-columns"));
  });
  renderHistory();
}

export async function show() {
  await loadTargets();
}

export function hide() {}

async function loadTargets() {
  const names = ["base"];
  try {
    const models = await request("/v1/models", { kind: "inference" });
    for (const model of models.data) {
      if (model.parent === null || model.parent === undefined) baseModel = baseModel || model.id;
      else names.push(model.id);
    }
  } catch (err) {
    notify(`could not list models: ${err.message}`);
  }
  if (keys.admin()) {
    try {
      const view = await request("/admin/adapters");
      for (const adapter of view.adapters)
        for (const version of adapter.versions) names.push(version.ref);
      names.push(...(view.experiments || []));
    } catch (_) {
      // the admin key is optional here: experiments and versions are only suggestions
    }
  }
  const list = clear($("#target-list"));
  for (const name of [...new Set(names)]) list.append(el("option", { value: name }));
  const inputs = $$(".target");
  const adapters = names.filter((n) => n !== "base" && !n.includes("@"));
  if (inputs.every((input) => !input.value)) {
    inputs[0].value = adapters[0] || "base";
    inputs[1].value = adapters[1] || "base";
  }
}

function settings() {
  const body = {};
  const number = (id) => ($(id).value === "" ? undefined : Number($(id).value));
  body.temperature = number("#play-temperature");
  body.top_p = number("#play-top-p");
  body.max_tokens = number("#play-max-tokens");
  body.seed = number("#play-seed");
  const extra = $("#play-extra").value.trim();
  if (extra) {
    const parsed = JSON.parse(extra); // a SyntaxError is shown to the user
    if (typeof parsed !== "object" || Array.isArray(parsed) || parsed === null)
      throw new SyntaxError("more fields must be a JSON object");
    Object.assign(body, parsed);
  }
  return Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined));
}

function messagesFor(target, system, user) {
  const messages = system ? [{ role: "system", content: system }] : [];
  for (const turn of turns) {
    messages.push({ role: "user", content: turn.user });
    if (turn.answers[target]) messages.push({ role: "assistant", content: turn.answers[target] });
  }
  messages.push({ role: "user", content: user });
  return messages;
}

function send() {
  const targets = [...new Set($$(".target").map((i) => i.value.trim()).filter(Boolean))];
  const user = $("#play-message").value.trim();
  const system = $("#play-system").value.trim();
  if (!targets.length || !user) {
    notify("give at least one target and a message");
    return;
  }
  let sampling;
  try {
    sampling = settings();
  } catch (err) {
    notify(`more fields: ${err.message}`);
    return;
  }
  notify("");
  stop();
  remember({ targets, system, user, sampling: $("#play-extra").value.trim() });
  const turn = { user, answers: {} };
  const columns = clear($("#play-columns"));
  columns.dataset.count = String(targets.length);
  const jobs = targets.map((target) => {
    const column = renderColumn(target, system, user);
    columns.append(column.root);
    return stream(target, messagesFor(target, system, user), sampling, column).then((text) => {
      if (text) turn.answers[target] = text;
    });
  });
  Promise.allSettled(jobs).then(() => turns.push(turn));
  $("#play-message").value = "";
}

function stop() {
  for (const controller of controllers) controller.abort();
  controllers = [];
}

function renderColumn(target, system, user) {
  const transcript = el("div", { class: "transcript" });
  if (system) transcript.append(el("div", { class: "msg system" }, system));
  for (const turn of turns) {
    transcript.append(el("div", { class: "msg user" }, turn.user));
    if (turn.answers[target]) transcript.append(el("div", { class: "msg assistant" }, turn.answers[target]));
  }
  transcript.append(el("div", { class: "msg user" }, user));
  const answer = el("div", { class: "msg assistant answer" });
  const served = el("span", { class: "served muted" });
  const stats = el("div", { class: "stats" }, "waiting…");
  const root = el(
    "article",
    { class: "column", "data-target": target },
    el("h3", {}, target, " ", served),
    transcript,
    answer,
    stats,
  );
  return { root, answer, served, stats };
}

/** Stream one target's answer into its column; returns the full text. */
async function stream(target, messages, sampling, column) {
  const body = { ...sampling, messages, stream: true, stream_options: { include_usage: true } };
  const extra = { "Content-Type": "application/json" };
  if (target === "base") {
    body.model = baseModel || "base";
    extra["X-Adapter"] = "base";
  } else {
    body.model = target;
  }
  const controller = new AbortController();
  controllers.push(controller);
  const started = performance.now();
  let first = null;
  let text = "";
  let usage = null;
  let finish = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers("inference", extra),
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) throw await errorOf(response);
    const experiment = response.headers.get("X-Experiment");
    column.served.textContent = [response.headers.get("X-Adapter"), experiment].filter(Boolean).join(" · ");
    column.stats.textContent = "streaming…";
    for await (const event of sseEvents(response.body)) {
      if (event.error) throw new Error(event.error.message || "stream failed");
      if (event.usage) usage = event.usage;
      for (const choice of event.choices || []) {
        const delta = choice.delta && choice.delta.content;
        if (delta) {
          if (first === null) first = performance.now();
          text += delta;
          column.answer.textContent = text;
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    }
    const ended = performance.now();
    column.stats.textContent = statsLine(started, first, ended, usage, finish);
  } catch (err) {
    if (err.name === "AbortError") column.stats.textContent = `stopped · ${statsLine(started, first, performance.now(), usage, finish)}`;
    else {
      column.stats.textContent = "error";
      column.answer.append(el("div", { class: "error" }, err.message));
    }
  }
  return text;
}

function statsLine(started, first, ended, usage, finish) {
  const ttft = first === null ? null : first - started;
  const tokens = usage ? usage.completion_tokens : null;
  // decode rate: the tokens after the first, over the time after the first
  const rate = tokens && tokens > 1 && first !== null && ended > first ? ((tokens - 1) * 1000) / (ended - first) : null;
  return [
    `TTFT ${fmt(ttft, 0, " ms")}`,
    `${fmt(rate, 1)} tokens/s`,
    `${tokens ?? "–"} tokens`,
    finish ? `finish: ${finish}` : null,
  ]
    .filter(Boolean)
    .join(" · ");
}

/** Server-sent events of a fetch body, parsed as JSON, until `data: [DONE]`. Multi-byte characters split
 * across network chunks are decoded whole (TextDecoderStream keeps the partial bytes). */
export async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      yield JSON.parse(data);
    }
  }
}

function remember(entry) {
  const history = loadHistory().filter((h) => h.user !== entry.user || h.targets.join() !== entry.targets.join());
  history.unshift(entry);
  sessionStorage.setItem(HISTORY, JSON.stringify(history.slice(0, HISTORY_SIZE)));
  renderHistory();
}

function loadHistory() {
  try {
    return JSON.parse(sessionStorage.getItem(HISTORY) || "[]");
  } catch (_) {
    return [];
  }
}

function renderHistory() {
  const list = clear($("#play-history"));
  for (const entry of loadHistory()) {
    const use = el("button", { type: "button", class: "link" }, entry.user);
    use.addEventListener("click", () => {
      const inputs = $$(".target");
      inputs.forEach((input, i) => {
        input.value = entry.targets[i] || "";
      });
      $("#play-system").value = entry.system || "";
      $("#play-message").value = entry.user;
      $("#play-extra").value = entry.sampling || "";
    });
    list.append(el("li", {}, use, el("span", { class: "muted" }, ` → ${entry.targets.join(", ")}`)));
  }
}
