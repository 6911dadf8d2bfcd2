// Operations: health, model and downloads, watcher, storage; polled while the page is open.
import { get, post } from "../api.js";
import { h, progressBar, safely } from "../ui.js";

let timer = null;
const seen = [];
const seenBytes = {};

function card(title, id, ...body) {
  return h("div", { class: "card", id }, h("h3", {}, title), ...body);
}

const mb = (b) => `${(b / 1048576).toFixed(1)} MB`;

async function refresh(el) {
  const [health, status, stats, downloads, watcher] = await Promise.all([
    get("/health"), get("/status"), get("/storage/stats"), get("/models/downloads"),
    get("/watcher/status").catch(() => null),
  ]);
  const m = status.model;
  const dl = downloads.downloads.map((d) => {
    const mine = (seenBytes[d.download_id] ||= []);
    if (mine[mine.length - 1] !== d.bytes_downloaded) mine.push(d.bytes_downloaded);
    return h("div", { class: "download", dataset: { model: d.model_id, status: d.status,
      total: d.total_bytes ?? "", seen: mine.join(",") } },
    h("span", {}, `${d.model_id}: ${d.status}${d.current_file ? ` (${d.current_file})` : ""}`),
    progressBar(d.bytes_downloaded, d.total_bytes || 0,
      `${mb(d.bytes_downloaded)}${d.total_bytes ? ` of ${mb(d.total_bytes)}` : ""}`));
  });
  const parts = [
    card("Health", "ops-health", h("p", {}, h("span", { class: `badge ${health.status}` }, health.status),
      ` version ${health.version}, up ${status.uptime_seconds} s, ${status.workers} worker(s)`),
    health.message ? h("p", { class: "muted" }, health.message) : null),
    card("Model", "ops-model", m ? h("p", {}, `${m.model_id} — ${m.status}${m.device ? ` on ${m.device}` : ""}`)
      : h("p", { class: "muted" }, "no model"), h("h4", {}, "Downloads"),
    dl.length ? dl : h("p", { class: "muted" }, "none")),
    card("Storage", "ops-storage", h("p", {}, `${stats.stats.mode}: ${stats.stats.total_tracks} tracks ` +
      `(${stats.stats.text_collection_count} text, ${stats.stats.audio_collection_count} audio), ` +
      `${stats.stats.profile_count} profiles, ${stats.stats.stale_vectors} stale`)),
  ];
  if (watcher) {
    const total = watcher.done + watcher.pending;
    if (seen[seen.length - 1] !== watcher.done) seen.push(watcher.done);
    parts.push(card("Watcher", "ops-watcher",
      h("p", {}, h("span", { id: "watcher-state" }, watcher.state),
        ` — ${watcher.folders.length} folder(s), ${watcher.failed} failed, ${watcher.rate_per_min.toFixed(0)}/min` +
        (watcher.eta_s ? `, about ${Math.ceil(watcher.eta_s)} s left` : "")),
      h("div", { id: "watcher-progress", dataset: { done: watcher.done, total, seen: seen.join(",") } },
        progressBar(watcher.done, total, `${watcher.done} / ${total} files`)),
      watcher.current_file ? h("p", { class: "muted" }, watcher.current_file) : null,
      h("button", { id: "watcher-scan", onclick: () => safely(() => post("/watcher/scan", {})) }, "Scan now")));
  } else {
    parts.push(card("Watcher", "ops-watcher", h("p", { class: "muted" }, "not installed")));
  }
  el.replaceChildren(...parts);
}

export async function show(main, params) {
  const el = h("section", { class: "grid2", id: "ops" });
  main.append(h("h2", {}, "Operations"), el);
  const every = Number(params.get("poll")) || 1000;
  const tick = async () => {
    await safely(() => refresh(el));
    if (timer !== null) timer = setTimeout(tick, every);
  };
  timer = 0;
  await tick();
}

export function leave() {
  clearTimeout(timer);
  timer = null;
}
