// Path builder: pick A and B (from the map or by search), then a song path between them.
import { post } from "../api.js";
import { h, safely, state, trackLine } from "../ui.js";
import { searchText } from "./search.js";

function picker(which, label) {
  const chosen = h("div", { class: "chosen", id: `${which}-chosen` },
    state[which] ? trackLine(state[which]) : h("span", { class: "muted" }, "none yet"));
  const input = h("input", { id: `${which}-search`, type: "search", placeholder: `search for ${label}` });
  const list = h("ul", { class: "results compact" });
  const run = () => safely(async () => {
    const found = await searchText(input.value.trim() || "music", new Set(), 8);
    list.replaceChildren(...found.map((r) => h("li", {}, h("button", { class: "link", onclick: () => {
      state[which] = r.metadata;
      chosen.replaceChildren(trackLine(r.metadata));
      list.replaceChildren();
    } }, trackLine(r.metadata)))));
  });
  return h("div", { class: "card" }, h("h3", {}, label), chosen,
    h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); run(); } }, input,
      h("button", { type: "submit", id: `${which}-find` }, "Find")), list);
}

export async function show(main) {
  const steps = h("input", { id: "path-steps", type: "number", min: 3, max: 100, value: 12 });
  const cap = h("input", { id: "path-cap", type: "number", min: 1, max: 50, placeholder: "any" });
  const save = h("input", { id: "path-save", type: "checkbox" });
  const out = h("ol", { id: "path-results", class: "results" });
  const build = () => safely(async () => {
    if (!state.pathA || !state.pathB) throw new Error("pick A and B first (on the map or by search)");
    const body = { start_id: state.pathA.track_id, end_id: state.pathB.track_id,
      steps: Number(steps.value), save: save.checked };
    if (cap.value) body.max_per_artist = Number(cap.value);
    const r = await post("/tracks/path", body);
    out.replaceChildren(...r.steps.map((s) => h("li", {}, trackLine(s.metadata),
      h("span", { class: "meter", title: `progress ${s.progress.toFixed(2)}` },
        h("span", { style: `left:${(s.progress * 100).toFixed(1)}%` })),
      h("span", { class: "muted" }, ` off the line ${s.line_distance.toFixed(2)}`))));
  });
  main.append(h("section", {}, h("h2", {}, "Song path"),
    h("div", { class: "grid2" }, picker("pathA", "Start (A)"), picker("pathB", "End (B)")),
    h("div", { class: "row" }, h("label", {}, "steps ", steps), h("label", {}, "max per artist ", cap),
      h("label", {}, save, " save as playlist"), h("button", { id: "path-build", onclick: build }, "Build path")),
    out));
}
