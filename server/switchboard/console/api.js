// The console's only way to the server: the public API, with the keys the user typed in.
// Keys live in this tab's sessionStorage (gone when the tab closes) and travel as the bearer header.

const ADMIN = "switchboard.adminKey";
const INFERENCE = "switchboard.inferenceKey";

export const keys = {
  admin: () => sessionStorage.getItem(ADMIN) || "",
  inference: () => sessionStorage.getItem(INFERENCE) || "",
  set(admin, inference) {
    for (const [slot, value] of [[ADMIN, admin], [INFERENCE, inference]]) {
      if (value) sessionStorage.setItem(slot, value);
      else sessionStorage.removeItem(slot);
    }
  },
};

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/** The server's own message from an error response (OpenAI's {"error": {"message"}} shape). */
export async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) message = `${response.status}: ${body.error.message}`;
  } catch (_) {
    // not JSON: keep the status line
  }
  return new ApiError(message, response.status);
}

export function headers(kind, extra = {}) {
  const key = kind === "admin" ? keys.admin() : kind === "inference" ? keys.inference() : "";
  const out = { ...extra };
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

/** JSON request; `kind` picks the key: "admin", "inference" or "none". Throws ApiError with the server's message. */
export async function request(path, { method = "GET", body, kind = "admin" } = {}) {
  const init = { method, headers: headers(kind, body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(`network error: ${err.message}`, 0);
  }
  if (!response.ok) throw await errorOf(response);
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}
