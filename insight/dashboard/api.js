// The API client: JSON over /api/v1, the API key from this tab's sessionStorage.
const KEY = "insight.apiKey";
let waiting = null;

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
  }
}

export const apiKey = () => sessionStorage.getItem(KEY);

/** Show the key prompt once; resolves when the user submitted a key. */
export function askKey(message) {
  if (!waiting) {
    waiting = new Promise((resolve) => {
      const dialog = document.getElementById("key-dialog");
      const form = document.getElementById("key-form");
      const input = document.getElementById("key-input");
      if (message) form.querySelector("p").textContent = message;
      form.addEventListener("submit", () => {
        sessionStorage.setItem(KEY, input.value.trim());
        input.value = "";
        waiting = null;
        resolve();
      }, { once: true });
      dialog.showModal();
    });
  }
  return waiting;
}

export async function api(method, path, body) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const headers = { Accept: "application/json" };
    const key = apiKey();
    if (key) headers.Authorization = `Bearer ${key}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const reply = await fetch(`/api/v1${path}`, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = reply.status === 204 ? null : await reply.json().catch(() => null);
    if (reply.status === 401) {
      await askKey("That key was refused: try again.");
      continue;
    }
    if (!reply.ok) throw new ApiError(reply.status, data);
    return data;
  }
  throw new ApiError(401, { error: { message: "the API key was refused three times" } });
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body ?? {});
export const del = (path) => api("DELETE", path);
