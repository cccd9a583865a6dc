// Registry: adapters, versions, aliases (with their history), pins, residency and manifests; register,
// promote, roll back and remove, each after a confirmation, each error in the server's words.
import { request } from "./api.js";
import { $, clear, confirmed, el, fmt, notify } from "./dom.js";

const REFRESH_MS = 5000;
let timer = null;

export function init() {
  $("#reg-refresh").addEventListener("click", refresh);
  $("#reg-form").addEventListener("submit", (event) => {
    event.preventDefault();
    register();
  });
  $("#alias-form").addEventListener("submit", (event) => {
    event.preventDefault();
    promote($("#alias-name").value.trim(), $("#alias-target").value.trim());
  });
}

export function show() {
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
}

export function hide() {
  clearInterval(timer);
  timer = null;
}

async function refresh() {
  let view;
  try {
    view = await request("/admin/adapters");
  } catch (err) {
    notify(`registry: ${err.message}`);
    hide();
    return;
  }
  $("#reg-roots").textContent = `paths must lie under: ${view.adapter_roots.join(", ") || "(no adapter root)"} · ${view.resident.length} of ${view.max_resident} resident`;
  renderAliases(view);
  renderAdapters(view);
}

/** Run one change after the user agreed; then refresh, or show the server's refusal. */
async function change(question, action, done) {
  if (!confirmed(question)) return;
  try {
    const result = await action();
    notify(done(result), "notice");
  } catch (err) {
    notify(err.message);
  }
  await refresh();
}

function register() {
  const body = { name: $("#reg-name").value.trim(), path: $("#reg-path").value.trim() };
  const version = $("#reg-version").value.trim();
  const alias = $("#reg-alias").value.trim();
  if (version) body.version = version;
  if (alias) body.alias = alias;
  if ($("#reg-pinned").checked) body.pinned = true;
  change(
    `Register ${body.name}${version ? `@${version}` : " (next version)"} from ${body.path}${alias ? ` and point ${alias} at it` : ""}?`,
    () => request("/admin/adapters", { method: "POST", body }),
    (result) => `registered ${result.ref}`,
  );
}

function promote(alias, target) {
  change(
    `Point alias ${alias} at ${target}?`,
    () => request(`/admin/aliases/${encodeURIComponent(alias)}`, { method: "PUT", body: { target } }),
    (result) => `${result.alias} → ${result.target}${result.previous ? ` (was ${result.previous})` : ""}`,
  );
}

function rollback(alias) {
  change(
    `Roll alias ${alias} back to its previous target?`,
    () => request(`/admin/aliases/${encodeURIComponent(alias)}/rollback`, { method: "POST" }),
    (result) => `${result.alias} → ${result.target}`,
  );
}

function removeAlias(alias) {
  change(
    `Delete alias ${alias}? Requests naming it will get a 404.`,
    () => request(`/admin/aliases/${encodeURIComponent(alias)}`, { method: "DELETE" }),
    () => `deleted alias ${alias}`,
  );
}

function removeVersion(ref) {
  change(
    `Remove ${ref}? New requests for it get a 404; requests already running finish on it.`,
    () => request(`/admin/adapters/${encodeURIComponent(ref)}`, { method: "DELETE" }),
    (result) => `removed ${result.removed.join(", ")}`,
  );
}

function button(label, onclick, kind = "") {
  return el("button", { type: "button", class: kind, onclick }, label);
}

function renderAliases(view) {
  const box = clear($("#reg-aliases"));
  const names = Object.keys(view.aliases).sort();
  box.append(el("h2", {}, `Aliases (${names.length})`));
  if (!names.length) {
    box.append(el("p", { class: "muted" }, "no aliases"));
    return;
  }
  const rows = names.map((alias) => {
    const history = (view.alias_history || {})[alias] || [];
    return el(
      "tr",
      { "data-alias": alias },
      el("td", {}, alias),
      el("td", { class: "target" }, view.aliases[alias]),
      el("td", { class: "history" }, history.length ? history.join(" → ") : "–"),
      el(
        "td",
        {},
        button("Roll back", () => rollback(alias)),
        " ",
        button("Delete", () => removeAlias(alias), "danger"),
      ),
    );
  });
  box.append(
    el(
      "table",
      { id: "alias-table" },
      el("thead", {}, el("tr", {}, ["alias", "target", "earlier targets (oldest first)", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows),
    ),
  );
}

function manifestCells(manifest) {
  if (!manifest) return [el("td", { class: "muted" }, "no manifest"), el("td", {}, "–"), el("td", {}, "–")];
  const metrics = manifest.metrics || {};
  const data = manifest.data || {};
  const details = el("details", {}, el("summary", {}, manifest.base_model || "?"), el("pre", {}, JSON.stringify(manifest, null, 2)));
  return [
    el("td", {}, details, el("div", { class: "muted" }, `base hash ${(manifest.base_model_hash || "–").slice(0, 12)}`)),
    el(
      "td",
      {},
      `data ${(data.sha256 || "–").slice(0, 12)}`,
      el("div", { class: "muted" }, data.train_rows ? `${data.train_rows} train / ${data.eval_rows ?? "?"} eval rows` : ""),
    ),
    el(
      "td",
      {},
      `eval loss ${fmt(metrics.final_eval_loss, 3)} · train loss ${fmt(metrics.train_loss, 3)}`,
      el("div", { class: "muted" }, `${fmt(metrics.train_seconds, 0, " s")} training, ${metrics.steps ?? "?"} steps`),
    ),
  ];
}

function renderAdapters(view) {
  const box = clear($("#reg-adapters"));
  box.append(el("h2", {}, `Adapters (${view.adapters.length})`));
  for (const adapter of view.adapters) {
    const aliases = adapter.aliases.length ? ` · aliases: ${adapter.aliases.join(", ")}` : "";
    const rows = adapter.versions.map((v) =>
      el(
        "tr",
        { "data-ref": v.ref },
        el("td", {}, v.version, v.version === adapter.current ? el("span", { class: "badge on" }, "current") : null),
        el(
          "td",
          {},
          el("span", { class: v.resident ? "badge on" : "badge" }, v.resident ? "loaded" : "not loaded"),
          v.pinned ? el("span", { class: "badge" }, "pinned") : null,
          v.resident && v.load_s !== null ? el("div", { class: "muted" }, `loaded in ${fmt(v.load_s * 1000, 0, " ms")}`) : null,
        ),
        el("td", { class: "num" }, String(v.in_flight)),
        el("td", {}, new Date(v.created * 1000).toISOString().replace("T", " ").slice(0, 19), el("div", { class: "muted" }, v.path)),
        ...manifestCells(v.manifest),
        el(
          "td",
          {},
          button("Alias…", () => {
            $("#alias-target").value = v.ref;
            $("#alias-name").focus();
          }),
          " ",
          button("Remove", () => removeVersion(v.ref), "danger"),
        ),
      ),
    );
    box.append(
      el("h3", { "data-adapter": adapter.name }, adapter.name, el("span", { class: "muted" }, ` current ${adapter.current}${aliases}`)),
      el(
        "table",
        { class: "versions", "data-adapter": adapter.name },
        el(
          "thead",
          {},
          el("tr", {}, ["version", "residency", "in flight", "registered / path", "base", "data", "training", ""].map((h) => el("th", {}, h))),
        ),
        el("tbody", {}, rows),
      ),
    );
  }
}
