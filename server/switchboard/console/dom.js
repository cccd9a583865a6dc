// Building the page from data: every string goes in as text (textContent), never as HTML.

/** el("td", {class: "num", title: "…"}, "text", childNode, …): attributes set one by one, children as text or nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, ...children);
  return node;
}

export function append(node, ...children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** The banner at the top: the last error (or notice) in words, as text. */
export function notify(message, kind = "error") {
  const banner = $("#banner");
  banner.textContent = message;
  banner.className = kind;
  banner.hidden = !message;
}

export function fmt(value, digits = 2, unit = "") {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return `${Number(value).toFixed(digits)}${unit}`;
}

/** Ask before a change; the question names what will happen. */
export function confirmed(question) {
  return window.confirm(question);
}
