// The library map: a canvas scatter (one rectangle per track, no DOM node per track),
// zoom with the wheel, pan by dragging, colour by mood / genre / valence-arousal,
// hover for the track, click for similar tracks, radio and path ends.
import { get, post } from "../api.js";
import { h, safely, state, trackLine } from "../ui.js";

const PAGE = 20000;
const PALETTE = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0",
  "#f032e6", "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000",
  "#aaffc3", "#808000", "#ffd8b1", "#000075", "#808080"];
const CELL = 0.02; // hover grid cell, in map units

let data = null;
let view = { scale: 1, tx: 0, ty: 0 };
let canvas = null;
let colourBy = "mood";
let hovered = -1;
let grid = null;

async function load(onProgress) {
  const cols = { track_ids: [], x: [], y: [], names: [], artists: [], moods: [], genres: [],
    valence: [], arousal: [] };
  let total = Infinity;
  let version = 0;
  for (let offset = 0; offset < total; offset += PAGE) {
    const page = await get(`/map?offset=${offset}&limit=${PAGE}`);
    total = page.total;
    version = page.version;
    for (const k of Object.keys(cols)) cols[k].push(...page[k]);
    onProgress(cols.track_ids.length, total);
    if (!page.track_ids.length) break;
  }
  cols.total = cols.track_ids.length;
  cols.version = version;
  return cols;
}

function categories(values) {
  const counts = new Map();
  for (const v of values) if (v) counts.set(v, (counts.get(v) || 0) + 1);
  const top = [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, PALETTE.length - 1);
  return new Map(top.map(([v], i) => [v, PALETTE[i]]));
}

function hexRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

function hslRgb(hue, sat, light) {
  const c = (1 - Math.abs(2 * light - 1)) * sat, x = c * (1 - Math.abs(((hue / 60) % 2) - 1));
  const m = light - c / 2;
  const [r, g, b] = hue < 60 ? [c, x, 0] : [x, c, 0];
  return [r, g, b].map((v) => Math.round((v + m) * 255));
}

function vaColour(v, a) {
  if (v === null || a === null) return [153, 153, 153];
  // hue: red (sad) .. green (happy); lightness: dark (calm) .. bright (energetic)
  return hslRgb(((v + 1) / 2) * 120, 0.7, (35 + ((a + 1) / 2) * 35) / 100);
}

/** One packed RGBA colour per point (as ImageData's Uint32 view wants it). */
function colours() {
  const out = new Uint32Array(data.total);
  const pack = ([r, g, b]) => ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;
  if (colourBy === "va") {
    data.valence.forEach((v, i) => { out[i] = pack(vaColour(v, data.arousal[i])); });
    return out;
  }
  const values = colourBy === "genre" ? data.genres : data.moods;
  const table = categories(values);
  data.legend = table;
  const grey = pack(hexRgb("#808080"));
  values.forEach((v, i) => { out[i] = table.has(v) ? pack(hexRgb(table.get(v))) : grey; });
  return out;
}

function toScreen(i) {
  const w = canvas.width, ht = canvas.height, s = Math.min(w, ht) / 2.2;
  return [w / 2 + (data.x[i] * view.scale + view.tx) * s, ht / 2 - (data.y[i] * view.scale + view.ty) * s];
}

function toWorld(px, py) {
  const w = canvas.width, ht = canvas.height, s = Math.min(w, ht) / 2.2;
  return [((px - w / 2) / s - view.tx) / view.scale, ((ht / 2 - py) / s - view.ty) / view.scale];
}

/** A view that shows every point, filling the canvas. */
function fitView() {
  if (!data.total) return { scale: 1, tx: 0, ty: 0 };
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < data.total; i++) {
    x0 = Math.min(x0, data.x[i]); x1 = Math.max(x1, data.x[i]);
    y0 = Math.min(y0, data.y[i]); y1 = Math.max(y1, data.y[i]);
  }
  const s = Math.min(canvas.width, canvas.height) / 2.2;
  const scale = 0.92 * Math.min(canvas.width / s / Math.max(x1 - x0, 1e-6),
    canvas.height / s / Math.max(y1 - y0, 1e-6));
  return { scale, tx: -scale * (x0 + x1) / 2, ty: -scale * (y0 + y1) / 2 };
}

function buildGrid() {
  grid = new Map();
  for (let i = 0; i < data.total; i++) {
    const key = `${Math.floor(data.x[i] / CELL)},${Math.floor(data.y[i] / CELL)}`;
    if (!grid.has(key)) grid.set(key, []);
    grid.get(key).push(i);
  }
}

function nearest(px, py, radiusPx = 8) {
  const [wx, wy] = toWorld(px, py);
  const s = Math.min(canvas.width, canvas.height) / 2.2 * view.scale;
  const r = radiusPx / s;
  let best = -1, bestD = r * r;
  const cx = Math.floor(wx / CELL), cy = Math.floor(wy / CELL), span = Math.ceil(r / CELL);
  for (let gx = cx - span; gx <= cx + span; gx++) {
    for (let gy = cy - span; gy <= cy + span; gy++) {
      for (const i of grid.get(`${gx},${gy}`) || []) {
        const d = (data.x[i] - wx) ** 2 + (data.y[i] - wy) ** 2;
        if (d < bestD) { best = i; bestD = d; }
      }
    }
  }
  return best;
}

let layer = null; // the points, drawn once per view (hover only repaints the highlight)
let layerKey = "";

function drawPoints() {
  const started = performance.now();
  layer = layer || document.createElement("canvas");
  layer.width = canvas.width;
  layer.height = canvas.height;
  const w = layer.width, ht = layer.height;
  const ctx = layer.getContext("2d");
  const image = ctx.createImageData(w, ht);
  const px = new Uint32Array(image.data.buffer);
  px.fill(((255 << 24) | (28 << 16) | (21 << 8) | 17) >>> 0); // #11151c
  const size = Math.round(Math.max(2, Math.min(6, 2 * Math.sqrt(view.scale))));
  const half = Math.floor(size / 2);
  let drawn = 0;
  for (let i = 0; i < data.total; i++) {
    const [sx, sy] = toScreen(i);
    const x0 = Math.round(sx) - half, y0 = Math.round(sy) - half;
    if (x0 + size <= 0 || y0 + size <= 0 || x0 >= w || y0 >= ht) continue;
    const c = data.colour[i];
    for (let y = Math.max(0, y0); y < Math.min(ht, y0 + size); y++) {
      px.fill(c, y * w + Math.max(0, x0), y * w + Math.min(w, x0 + size));
    }
    drawn++;
  }
  ctx.putImageData(image, 0, 0);
  canvas.dataset.drawn = String(drawn);
  canvas.dataset.total = String(data.total);
  canvas.dataset.drawMs = (performance.now() - started).toFixed(1);
}

function draw() {
  const key = `${view.scale},${view.tx},${view.ty},${canvas.width},${canvas.height}`;
  if (key !== layerKey) {
    drawPoints();
    layerKey = key;
  }
  const ctx = canvas.getContext("2d");
  ctx.drawImage(layer, 0, 0);
  if (hovered >= 0) {
    const [sx, sy] = toScreen(hovered);
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 2;
    ctx.strokeRect(sx - 5, sy - 5, 10, 10);
  }
}

function legend(el) {
  el.replaceChildren();
  if (colourBy === "va") {
    el.append(h("span", { class: "muted" }, "hue: valence (red sad → green happy), brightness: arousal"));
    return;
  }
  for (const [name, colour] of data.legend || []) { // colour: "#rrggbb"
    el.append(h("span", { class: "chip small", style: `border-color:${colour};color:${colour}` }, name));
  }
}

async function showTrack(panel, i) {
  const id = data.track_ids[i];
  const meta = { track_id: id, name: data.names[i], artists: data.artists[i] ? [data.artists[i]] : [],
    primary_mood: data.moods[i] };
  const list = h("ol", { class: "results", id: "track-results" });
  const setEnd = (which) => { state[which] = meta; location.hash = "#/path"; };
  panel.replaceChildren(
    h("h3", {}, trackLine(meta)),
    h("p", { class: "muted" }, `genre ${data.genres[i] || "?"}, valence ${fmt(data.valence[i])}, arousal ${fmt(data.arousal[i])}`),
    h("div", { class: "row" },
      h("button", { id: "similar-btn", onclick: () => safely(async () => {
        const r = await get(`/tracks/${encodeURIComponent(id)}/similar?limit=10`);
        list.replaceChildren(...r.results.map((x) => h("li", {}, trackLine(x.metadata, x.score.toFixed(2)))));
      }) }, "Similar tracks"),
      h("button", { id: "radio-btn", onclick: () => safely(async () => {
        const r = await post("/radio/next", { seed_ids: [id], count: 10 });
        list.replaceChildren(...r.results.map((x) => h("li", {}, trackLine(x.metadata, x.reason || ""))));
      }) }, "Radio from here"),
      h("button", { onclick: () => setEnd("pathA") }, "Path from here"),
      h("button", { onclick: () => setEnd("pathB") }, "Path to here")),
    list);
}

const fmt = (v) => (v === null || v === undefined ? "?" : v.toFixed(2));

export async function show(main) {
  const status = h("span", { id: "map-status", class: "muted" }, "loading the map…");
  const select = h("select", { id: "colour-by", onchange: (e) => {
    colourBy = e.target.value; data.colour = colours(); legend(legendEl); layerKey = ""; draw();
  } }, h("option", { value: "mood" }, "colour by mood"), h("option", { value: "genre" }, "colour by genre"),
  h("option", { value: "va" }, "colour by valence / arousal"));
  const legendEl = h("div", { class: "legend" });
  const tip = h("div", { class: "tooltip", hidden: true });
  const panel = h("aside", { id: "map-panel" }, h("p", { class: "muted" }, "Click a point for its similar tracks and a radio."));
  canvas = h("canvas", { id: "map-canvas", width: 900, height: 640 });
  main.append(h("section", { class: "map-page" },
    h("div", { class: "map-main" }, h("div", { class: "row" }, select, status,
      h("button", { onclick: () => { view = fitView(); draw(); } }, "Reset view")),
    h("div", { class: "canvas-wrap" }, canvas, tip), legendEl), panel));
  const wrap = canvas.parentElement;
  canvas.width = Math.max(480, wrap.clientWidth - 4);
  canvas.height = Math.max(360, Math.min(760, window.innerHeight - 230));
  layerKey = "";
  data = await load((n, total) => { status.textContent = `loading ${n} / ${total} tracks…`; });
  view = fitView();
  data.colour = colours();
  buildGrid();
  status.textContent = `${data.total} tracks (layout v${data.version})`;
  legend(legendEl);
  draw();
  let drag = null;
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const [wx, wy] = toWorld(e.offsetX, e.offsetY);
    const factor = e.deltaY < 0 ? 1.25 : 0.8;
    const s = view.scale * factor;
    view.tx += wx * (view.scale - s);
    view.ty += wy * (view.scale - s);
    view.scale = s;
    hovered = -1; // the point under the cursor changed: the next move finds it
    tip.hidden = true;
    draw();
  }, { passive: false });
  canvas.addEventListener("mousedown", (e) => { drag = { x: e.offsetX, y: e.offsetY, moved: false }; });
  canvas.addEventListener("mouseup", (e) => {
    if (drag && !drag.moved) {
      const i = nearest(e.offsetX, e.offsetY);
      if (i >= 0) showTrack(panel, i);
    }
    drag = null;
  });
  canvas.addEventListener("mousemove", (e) => {
    if (drag) {
      const s = Math.min(canvas.width, canvas.height) / 2.2;
      if (Math.abs(e.offsetX - drag.x) + Math.abs(e.offsetY - drag.y) > 3) drag.moved = true;
      view.tx += (e.offsetX - drag.x) / s;
      view.ty -= (e.offsetY - drag.y) / s;
      drag.x = e.offsetX; drag.y = e.offsetY;
      draw();
      return;
    }
    const i = nearest(e.offsetX, e.offsetY);
    if (i !== hovered) { hovered = i; draw(); }
    tip.hidden = i < 0;
    if (i >= 0) {
      tip.textContent = `${data.names[i]} — ${data.artists[i] || "?"} (${data.moods[i] || "?"})`;
      tip.style.left = `${e.offsetX + 12}px`;
      tip.style.top = `${e.offsetY + 12}px`;
    }
  });
}
