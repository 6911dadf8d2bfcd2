// Small DOM helpers shared by the pages.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style") el.style.cssText = v; // CSSOM: allowed by the page's CSP
    else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export function toast(message, kind = "info") {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = kind;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 5000);
}

/** Run an async action, showing its error as a toast instead of an unhandled rejection. */
export async function safely(fn) {
  try {
    return await fn();
  } catch (err) {
    toast(err.message || String(err), "error");
    return undefined;
  }
}

export function trackLine(meta, extra) {
  const who = (meta.artists || []).join(", ");
  return h("span", { class: "track" },
    h("b", {}, meta.name || meta.track_id), who ? ` — ${who}` : "",
    meta.primary_mood ? h("span", { class: "chip small" }, meta.primary_mood) : null,
    extra ? h("span", { class: "muted" }, ` ${extra}`) : null);
}

export function progressBar(value, max, label) {
  const pct = max > 0 ? Math.min(100, (100 * value) / max) : 0;
  return h("div", { class: "progress", title: label || "" },
    h("div", { class: "bar", style: `width:${pct.toFixed(1)}%` }),
    h("span", {}, label || `${pct.toFixed(0)} %`));
}

export const state = { pathA: null, pathB: null };
