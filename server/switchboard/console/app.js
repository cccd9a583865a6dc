// Console shell: the key form and the pages (one visible at a time, chosen by the URL's #hash).
import { keys, request } from "./api.js";
import { $, $$, notify } from "./dom.js";
import * as experiments from "./experiments.js";
import * as playground from "./playground.js";
import * as registry from "./registry.js";
import * as traffic from "./traffic.js";

const PAGES = { playground, registry, experiments, traffic };
let current = null;

function showKeysState() {
  const parts = [];
  parts.push(keys.admin() ? "admin key set" : "no admin key");
  parts.push(keys.inference() ? "inference key set" : "no inference key");
  $("#keys-state").textContent = parts.join(" · ");
}

/** Say at once when the admin key is refused, rather than at the first change. */
async function checkAdminKey() {
  if (!keys.admin()) return;
  try {
    await request("/admin/adapters");
  } catch (err) {
    notify(`admin key: ${err.message}`);
  }
}

function route() {
  const name = (location.hash || "#playground").slice(1);
  const page = PAGES[name] ? name : "playground";
  if (current && current !== page) PAGES[current].hide?.();
  for (const section of $$(".page")) section.hidden = section.id !== `page-${page}`;
  for (const link of $$("nav a")) link.classList.toggle("active", link.dataset.page === page);
  current = page;
  notify("");
  PAGES[page].show();
}

function init() {
  $("#keys").addEventListener("submit", (event) => {
    event.preventDefault();
    keys.set($("#admin-key").value.trim(), $("#inference-key").value.trim());
    $("#admin-key").value = "";
    $("#inference-key").value = "";
    showKeysState();
    route();
    checkAdminKey();
  });
  $("#forget-keys").addEventListener("click", () => {
    keys.set("", "");
    showKeysState();
    route();
  });
  for (const page of Object.values(PAGES)) page.init();
  showKeysState();
  window.addEventListener("hashchange", route);
  route();
  document.body.dataset.ready = "true"; // the forms are wired (tests wait for this)
}

init();
