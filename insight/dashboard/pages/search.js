// Search: a text prompt → tracks, narrowed by mood chips.
import { get, post } from "../api.js";
import { h, safely, state, trackLine } from "../ui.js";

let moods = null;

export async function moodChips(selected, onChange, tiers = ["primary"]) {
  moods = moods || (await get("/mood/list")).moods;
  return h("div", { class: "chips" }, moods.filter((m) => tiers.includes(m.tier)).map((m) => h("button", {
    type: "button", class: `chip${selected.has(m.id) ? " on" : ""}`, dataset: { mood: m.id },
    onclick: (e) => {
      if (selected.has(m.id)) selected.delete(m.id); else selected.add(m.id);
      e.target.classList.toggle("on");
      onChange?.();
    },
  }, m.name)));
}

export async function searchText(query, moodSet, limit = 25) {
  const filter = moodSet.size ? { moods: [...moodSet] } : undefined;
  return (await post("/tracks/search-text", { query, limit, filter })).results;
}

export async function show(main) {
  const selected = new Set();
  const input = h("input", { id: "search-input", type: "search", placeholder: "describe the music: rainy night piano…" });
  const results = h("ol", { id: "search-results", class: "results" });
  const run = () => safely(async () => {
    if (!input.value.trim()) return;
    const found = await searchText(input.value.trim(), selected);
    results.replaceChildren(...found.map((r) => h("li", {},
      trackLine(r.metadata, r.score.toFixed(3)),
      h("button", { class: "small", onclick: () => { state.pathA = r.metadata; location.hash = "#/path"; } }, "path from"),
      h("button", { class: "small", onclick: () => { state.pathB = r.metadata; location.hash = "#/path"; } }, "path to"))));
    if (!found.length) results.append(h("li", { class: "muted" }, "nothing matches"));
  });
  main.append(h("section", {}, h("h2", {}, "Search"),
    h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); run(); } },
      input, h("button", { id: "search-btn", type: "submit" }, "Search")),
    await moodChips(selected, run), results));
}
