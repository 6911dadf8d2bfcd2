// The dashboard shell: a hash router over the pages, the health badge, the key prompt.
import { askKey, apiKey, get } from "./api.js";
import { safely } from "./ui.js";
import * as map from "./pages/map.js";
import * as search from "./pages/search.js";
import * as path from "./pages/path.js";
import * as mixes from "./pages/mixes.js";
import * as users from "./pages/users.js";
import * as ops from "./pages/ops.js";

const PAGES = { map, search, path, mixes, users, ops };
let current = null;

function route() {
  const [name, query] = (location.hash.replace(/^#\/?/, "") || "map").split("?");
  const page = PAGES[name] || map;
  if (current?.leave) current.leave();
  current = page;
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.page === name);
  }
  const main = document.getElementById("main");
  main.replaceChildren();
  main.dataset.page = name;
  safely(() => page.show(main, new URLSearchParams(query || "")));
}

async function health() {
  const badge = document.getElementById("health");
  const h = await get("/health").catch(() => null);
  badge.textContent = h ? h.status : "unreachable";
  badge.className = `badge ${h ? h.status : "unhealthy"}`;
}

async function start() {
  const cfg = await fetch("/ui/config.json").then((r) => r.json());
  if (cfg.auth && !apiKey()) await askKey();
  window.addEventListener("hashchange", route);
  route();
  health();
  setInterval(health, 10000);
}

start();
