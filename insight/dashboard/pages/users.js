// Users: a taste profile as a mood radar, and recent listening.
import { get, post } from "../api.js";
import { h, safely, trackLine } from "../ui.js";

function radar(canvas, scores) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, ht = canvas.height, cx = w / 2, cy = ht / 2, r = Math.min(w, ht) / 2 - 50;
  const entries = Object.entries(scores).sort((a, b) => b[1] - a[1]).slice(0, 10);
  const max = Math.max(...entries.map((e) => e[1]), 1e-9);
  ctx.clearRect(0, 0, w, ht);
  ctx.strokeStyle = "#445";
  ctx.fillStyle = "#ccd";
  ctx.font = "12px sans-serif";
  ctx.textAlign = "center";
  entries.forEach(([name], i) => {
    const a = (2 * Math.PI * i) / entries.length - Math.PI / 2;
    ctx.beginPath(); ctx.moveTo(cx, cy); ctx.lineTo(cx + r * Math.cos(a), cy + r * Math.sin(a)); ctx.stroke();
    ctx.fillText(name, cx + (r + 24) * Math.cos(a), cy + (r + 18) * Math.sin(a));
  });
  ctx.beginPath();
  entries.forEach(([, v], i) => {
    const a = (2 * Math.PI * i) / entries.length - Math.PI / 2, d = (r * v) / max;
    if (i === 0) ctx.moveTo(cx + d * Math.cos(a), cy + d * Math.sin(a));
    else ctx.lineTo(cx + d * Math.cos(a), cy + d * Math.sin(a));
  });
  ctx.closePath();
  ctx.fillStyle = "rgba(90,160,255,0.45)";
  ctx.fill();
  ctx.strokeStyle = "#5af";
  ctx.stroke();
  canvas.dataset.moods = entries.map((e) => e[0]).join(",");
}

export async function show(main, params) {
  const input = h("input", { id: "user-id", placeholder: "user id", value: params.get("user") || "" });
  const canvas = h("canvas", { id: "radar", width: 420, height: 380 });
  const info = h("p", { id: "profile-info", class: "muted" });
  const recent = h("ol", { id: "history", class: "results" });
  const load = () => safely(async () => {
    const user = input.value.trim();
    if (!user) return;
    const hist = await get(`/users/${encodeURIComponent(user)}/history?limit=25`);
    recent.replaceChildren(...hist.items.map((it) => h("li", {},
      trackLine(it.metadata || { track_id: it.track_id }, `${it.play_count} plays, ${it.skip_count} skips${it.is_favorite ? ", ♥" : ""}`))));
    if (!hist.items.length) recent.append(h("li", { class: "muted" }, "no recorded listening"));
    const { profile } = await get(`/users/${encodeURIComponent(user)}/profile/vector`);
    const mood = await post("/mood/classify", { embedding: profile.embedding,
      tiers: ["primary", "refined", "contextual"], top_k: 26, include_va: true });
    info.textContent = `${profile.track_count} tracks, confidence ${profile.confidence.toFixed(2)}; ` +
      `valence ${mood.valence?.toFixed(2)}, arousal ${mood.arousal?.toFixed(2)}`;
    radar(canvas, mood.mood_scores);
  });
  main.append(h("section", {}, h("h2", {}, "Users"),
    h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); load(); } }, input,
      h("button", { id: "user-load", type: "submit" }, "Show")),
    h("div", { class: "grid2" }, h("div", { class: "card" }, h("h3", {}, "Taste (mood radar)"), canvas, info),
      h("div", { class: "card" }, h("h3", {}, "Recent listening"), recent))));
  if (input.value) await load();
}
