// Mixes from traits, and the cluster playlists (build, view, export as M3U8, delete).
import { del, get, post } from "../api.js";
import { h, safely, toast, trackLine } from "../ui.js";
import { moodChips } from "./search.js";

const num = (el) => (el.value === "" ? undefined : Number(el.value));

function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "audio/x-mpegurl" }));
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function playlists(listEl, detail) {
  const { playlists: all, refresh_interval_s: every, next_refresh_at: next } = await get("/playlists");
  const schedule = every
    ? `cluster playlists refresh every ${Math.round(every / 3600)} h, next at ${new Date(next * 1000).toLocaleString()}`
    : "cluster playlists are not refreshed on a schedule";
  listEl.replaceChildren(h("li", { class: "muted", id: "cluster-schedule" }, schedule), ...all.map((p) => h("li", { dataset: { id: p.playlist_id, kind: p.kind } },
    h("b", {}, p.name), h("span", { class: "muted" }, ` ${p.kind}, ${p.track_count} tracks`),
    h("button", { class: "small", onclick: () => safely(async () => {
      const r = await get(`/playlists/${p.playlist_id}`);
      detail.replaceChildren(h("h3", {}, r.playlist.name), h("p", { class: "muted" }, r.playlist.description),
        h("ol", { class: "results", id: "playlist-tracks" }, r.tracks.map((t) => h("li", {}, trackLine(t)))));
    }) }, "open"),
    h("button", { class: "small", onclick: () => safely(async () => {
      const m = await get(`/playlists/${p.playlist_id}/m3u8`);
      download(m.filename, m.content);
    }) }, "M3U8"),
    h("button", { class: "small danger", onclick: () => safely(async () => {
      await del(`/playlists/${p.playlist_id}`);
      toast(`deleted ${p.name}`);
      await playlists(listEl, detail);
    }) }, "delete"))));
  if (!all.length) listEl.append(h("li", { class: "muted" }, "no playlists yet"));
}

export async function show(main) {
  const moods = new Set();
  const f = {
    minV: h("input", { type: "number", step: 0.1, min: -1, max: 1, placeholder: "min" }),
    maxV: h("input", { type: "number", step: 0.1, min: -1, max: 1, placeholder: "max" }),
    minA: h("input", { type: "number", step: 0.1, min: -1, max: 1, placeholder: "min" }),
    maxA: h("input", { type: "number", step: 0.1, min: -1, max: 1, placeholder: "max" }),
    genres: h("input", { id: "mix-genres", placeholder: "genres, comma separated" }),
    prompt: h("input", { id: "mix-prompt", placeholder: "a prompt (optional)" }),
    user: h("input", { id: "mix-user", placeholder: "for user (optional)" }),
    size: h("input", { id: "mix-size", type: "number", min: 1, max: 500, value: 25 }),
    save: h("input", { id: "mix-save", type: "checkbox" }),
  };
  const mixOut = h("ol", { id: "mix-results", class: "results" });
  const listEl = h("ul", { id: "playlists", class: "results" });
  const detail = h("div", { id: "playlist-detail" });
  const k = h("input", { id: "cluster-k", type: "number", min: 2, max: 200, value: 8 });
  const every = h("select", { id: "cluster-every" }, h("option", { value: 0 }, "no refresh"),
    h("option", { value: 86400 }, "refresh daily"), h("option", { value: 604800 }, "refresh weekly"));
  const mix = () => safely(async () => {
    const body = { moods: [...moods], size: num(f.size), min_valence: num(f.minV), max_valence: num(f.maxV),
      min_arousal: num(f.minA), max_arousal: num(f.maxA), save: f.save.checked,
      genres: f.genres.value.split(",").map((g) => g.trim()).filter(Boolean) };
    if (f.prompt.value.trim()) body.prompt = f.prompt.value.trim();
    if (f.user.value.trim()) body.user_id = f.user.value.trim();
    const r = await post("/mixes", body);
    mixOut.replaceChildren(...r.tracks.map((t) => h("li", {}, trackLine(t.metadata, t.score.toFixed(2)))));
    if (r.playlist_id) await playlists(listEl, detail);
  });
  const cluster = () => safely(async () => {
    const r = await post("/playlists/clusters", { clusters: num(k), refresh_interval_s: Number(every.value) });
    toast(`${r.playlists.length} playlists from ${r.tracks} tracks` +
      (r.kept_share === null ? "" : `, ${(100 * r.kept_share).toFixed(0)} % kept their playlist`));
    await playlists(listEl, detail);
  });
  main.append(h("section", { class: "grid2" },
    h("div", { class: "card" }, h("h2", {}, "Mix from traits"), await moodChips(moods, null, ["primary", "refined", "contextual"]),
      h("div", { class: "row" }, h("label", {}, "valence ", f.minV, f.maxV), h("label", {}, "arousal ", f.minA, f.maxA)),
      h("div", { class: "row" }, f.genres, f.prompt), h("div", { class: "row" }, f.user,
        h("label", {}, "size ", f.size), h("label", {}, f.save, " save")),
      h("button", { id: "mix-build", onclick: mix }, "Make the mix"), mixOut),
    h("div", { class: "card" }, h("h2", {}, "Cluster playlists"),
      h("div", { class: "row" }, h("label", {}, "playlists ", k), every,
        h("button", { id: "cluster-build", onclick: cluster }, "Group the library")),
      listEl, detail)));
  await playlists(listEl, detail);
}
