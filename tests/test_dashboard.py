"""The dashboard in a real browser (headless Debian Chromium through Selenium): every page
loads without console errors, the map draws one point per track, search, path, mixes,
playlists and users work, the watcher's progress moves live; screenshots are saved."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest_asyncio
from browser import ARTIFACTS, api, chrome, console_errors, screenshot, wait_for
from conftest import Running, make_settings, start_running, stop_running
from fake_hub import FakeHub, hub_layout
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from synthetic_library import build, store_library, unit

from insight.mood import mood_labels
from insight.schemas import ComputeProfileRequest
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, Point
from insight.taste.compute import compute_profiles
from tests.audio_files import write_track

ROOT = Path(__file__).resolve().parent.parent
CLUSTERS = 12
PER_CLUSTER = 250
TRACKS = CLUSTERS * PER_CLUSTER
FILES = 16
DOWNLOAD = "test-org/tiny-download"
GENRES = ["Rock", "Jazz", "Ambient", "Techno", "Folk", "Classical", "Hip-Hop", "Metal"]


async def store_big_library(app: Any) -> None:
    """12 mood clusters of 250 tracks (sub-clusters per artist), every track with audio."""
    rng = np.random.default_rng(4)
    moods = list(mood_labels())[:CLUSTERS]
    model_id = app.require_pool().model.model_id
    dim = app.require_store().dim
    centres = rng.standard_normal((CLUSTERS, dim)).astype(np.float32)
    points = []
    for c, mood in enumerate(moods):
        for a in range(10):
            sub = unit(centres[c] + 0.7 * unit(rng.standard_normal(dim)))
            for j in range(PER_CLUSTER // 10):
                vec = unit(sub + 0.5 * unit(rng.standard_normal(dim)))
                tid = f"library://track/{c}-{a}-{j}"
                payload = {
                    "track_id": tid,
                    "name": f"{mood.name} song {a}.{j}",
                    "artists": [f"Artist {c}.{a}"],
                    "genres": [GENRES[(c + a % 2) % len(GENRES)]],
                    "primary_mood": mood.id,
                    "moods": [mood.id],
                    "valence": mood.valence_hint,
                    "arousal": mood.arousal_hint,
                    "model_id": model_id,
                }
                points.append(Point(tid, vec, payload))
    store = app.require_store()
    await store.upsert(TRACKS_TEXT, points)
    await store.upsert(TRACKS_AUDIO, points)
    history = app.services.history
    now = int(time.time())
    for i, p in enumerate(points[:: PER_CLUSTER // 4][:12]):
        await history.record_play("u1", p.key, 200.0, 200.0, True, now - 60 * i)
    await compute_profiles(app, ComputeProfileRequest(user_id="u1"))


@pytest_asyncio.fixture
async def dash(tmp_path: Path, tiny_model_dir: Path) -> AsyncIterator[tuple[Running, Path]]:
    hub = await FakeHub(repos={DOWNLOAD: hub_layout(tiny_model_dir)}, throttle_s=0.15).start()
    music = tmp_path / "music"
    for i in range(FILES):
        write_track(music / f"t{i:02d}.wav", seconds=6.0, freq=220.0 + 40 * i)
    settings = make_settings(
        tmp_path / "data",
        tiny_model_dir,
        model={"hub_endpoint": hub.url},
        watcher={"enabled": True, "folders": [music], "scan_on_start": False, "debounce_s": 0},
    )
    r = await start_running(settings)
    await store_big_library(r.app)
    yield r, music
    await stop_running(r)
    await hub.stop()


def js(driver: Any, script: str) -> Any:
    return driver.execute_script(script)


def count(driver: Any, selector: str) -> int:
    return len(driver.find_elements(By.CSS_SELECTOR, selector))


def no_errors(driver: Any, page: str) -> None:
    errors = console_errors(driver)
    assert not errors, f"console errors on {page}: {errors}"


COLOURED = """
const c = document.getElementById('map-canvas');
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let n = 0, at = null;
for (let i = 0; i < d.length; i += 4) {
  if (d[i] !== 17 || d[i + 1] !== 21 || d[i + 2] !== 28) {
    n++;
    const px = (i / 4) % c.width;
    if (at === null && px > 20) at = [px, Math.floor(i / 4 / c.width)];
  }
}
return [n, at, c.width, c.height];
"""


def drive_map(driver: Any, base: str) -> None:
    driver.get(base + "/#/map")
    canvas = wait_for(lambda: driver.find_element(By.ID, "map-canvas"), message="map canvas")
    wait_for(lambda: canvas.get_attribute("data-total") == str(TRACKS), 60, "all tracks loaded")
    assert canvas.get_attribute("data-drawn") == str(TRACKS)  # every point is in view
    assert count(driver, "canvas") == 1 and count(driver, "#map-canvas ~ *") <= 1  # no DOM dots
    screenshot(driver, "map")
    coloured, (x, y), w, h = js(driver, COLOURED)
    assert coloured > TRACKS // 2, coloured  # points are drawn (some overlap)
    status = driver.find_element(By.ID, "map-status").text
    assert status.startswith(f"{TRACKS} tracks")
    legend = driver.find_elements(By.CSS_SELECTOR, ".legend .chip")
    assert len(legend) == CLUSTERS
    if os.environ.get("INSIGHT_UPDATE_SCREENSHOTS"):
        driver.save_screenshot(str(ROOT / "docs" / "images" / "dashboard-map.png"))
    screenshot(driver, "map")
    ActionChains(driver).move_to_element_with_offset(
        canvas, x - w // 2, y - h // 2
    ).click().perform()
    wait_for(lambda: driver.find_element(By.CSS_SELECTOR, "#map-panel h3"), message="track panel")
    driver.find_element(By.ID, "similar-btn").click()
    wait_for(lambda: count(driver, "#track-results li") == 10, message="similar tracks")
    driver.find_element(By.ID, "radio-btn").click()
    wait_for(lambda: "after" in driver.find_element(By.ID, "track-results").text, message="radio")
    for _ in range(6):  # wheel up over the canvas: zoom in
        origin = ScrollOrigin.from_element(canvas)
        ActionChains(driver).scroll_from_origin(origin, 0, -120).perform()
    wait_for(lambda: int(canvas.get_attribute("data-drawn")) < TRACKS, message="zoomed in")
    screenshot(driver, "map-zoomed")
    Select(driver.find_element(By.ID, "colour-by")).select_by_value("genre")
    wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, ".legend .chip")) == len(GENRES))
    Select(driver.find_element(By.ID, "colour-by")).select_by_value("va")
    wait_for(lambda: "valence" in driver.find_element(By.CSS_SELECTOR, ".legend").text)
    screenshot(driver, "map-valence-arousal")
    chosen = driver.find_element(By.CSS_SELECTOR, "#map-panel h3 b").text
    driver.find_element(By.XPATH, "//button[text()='Path from here']").click()
    wait_for(lambda: driver.execute_script("return location.hash") == "#/path")
    a = wait_for(lambda: driver.find_element(By.ID, "pathA-chosen"))
    assert chosen and chosen in a.text  # the map's track is the path's start
    no_errors(driver, "map")


def drive_search_path_mixes(driver: Any, base: str) -> None:
    driver.get(base + "/#/search")
    box = wait_for(lambda: driver.find_element(By.ID, "search-input"))
    box.send_keys("calm piano at night")
    driver.find_element(By.ID, "search-btn").click()
    wait_for(lambda: count(driver, "#search-results li") == 25, message="search results")
    chip = wait_for(lambda: driver.find_element(By.CSS_SELECTOR, "#main .chip[data-mood]"))
    mood = chip.get_attribute("data-mood")
    chip.click()
    wait_for(
        lambda: all(
            li.find_element(By.CSS_SELECTOR, ".chip").text == mood
            for li in driver.find_elements(By.CSS_SELECTOR, "#search-results li")
        ),
        message="mood chip filters the results",
    )
    screenshot(driver, "search")
    no_errors(driver, "search")

    driver.get(base + "/#/path")
    for which, pick in (("pathA", 0), ("pathB", 5)):
        wait_for(lambda w=which: driver.find_element(By.ID, f"{w}-search")).send_keys("music")
        driver.find_element(By.ID, f"{which}-find").click()
        wait_for(lambda w=which: count(driver, f"#{w}-chosen ~ ul li") == 8)
        driver.find_elements(By.CSS_SELECTOR, f"#{which}-chosen ~ ul li button")[pick].click()
    driver.find_element(By.ID, "path-build").click()
    wait_for(lambda: count(driver, "#path-results li") == 12, message="path steps")
    screenshot(driver, "path")
    no_errors(driver, "path")

    driver.get(base + "/#/mixes")
    chip = wait_for(lambda: driver.find_element(By.CSS_SELECTOR, "#main .chip[data-mood]"))
    mood = chip.get_attribute("data-mood")
    chip.click()
    driver.find_element(By.ID, "mix-build").click()
    # 10 artists in the mood, at most 2 tracks each (the default cap)
    wait_for(lambda: count(driver, "#mix-results li") == 20, message="mix")
    chips = driver.find_elements(By.CSS_SELECTOR, "#mix-results li .chip")
    assert {c.text for c in chips} == {mood}
    k = driver.find_element(By.ID, "cluster-k")
    k.clear()
    k.send_keys(str(CLUSTERS))
    driver.find_element(By.ID, "cluster-build").click()
    wait_for(lambda: count(driver, "#playlists li[data-kind=cluster]") == CLUSTERS, 60)
    driver.find_element(By.CSS_SELECTOR, "#playlists li button").click()
    wait_for(lambda: count(driver, "#playlist-tracks li") > 100, message="playlist tracks")
    screenshot(driver, "mixes")
    no_errors(driver, "mixes")

    driver.get(base + "/#/users?user=u1")
    radar = wait_for(lambda: driver.find_element(By.ID, "radar"))
    wait_for(lambda: radar.get_attribute("data-moods"), message="mood radar")
    wait_for(lambda: count(driver, "#history li") == 12, message="recent listening")
    screenshot(driver, "users")
    no_errors(driver, "users")


def drive_ops(driver: Any, base: str) -> None:
    driver.get(base + "/#/ops?poll=50")
    wait_for(lambda: driver.find_element(By.ID, "watcher-progress"), message="watcher card")
    text = "return document.getElementById('{}').textContent"  # one read: the page redraws
    assert "healthy" in js(driver, text.format("ops-health"))
    assert f"{TRACKS} tracks" in js(driver, text.format("ops-storage"))
    assert "insight/tiny-clap" in js(driver, text.format("ops-model"))
    api(base, "POST", "/watcher/scan", {})
    progress = "return document.getElementById('watcher-progress').dataset"
    wait_for(
        lambda: js(driver, progress)["done"] == str(FILES),
        90,
        "scan finished",
    )
    seen = js(driver, progress)["seen"]
    values = [int(v) for v in seen.split(",")]
    assert values == sorted(values) and values[-1] == FILES
    assert any(0 < v < FILES for v in values), values  # the bar moved while it scanned
    # a model download (from a throttled loopback hub): its bar moves too
    api(base, "POST", "/models/download", {"model_id": DOWNLOAD})
    bar = f"return document.querySelector('.download[data-model=\"{DOWNLOAD}\"]')?.dataset"
    done = wait_for(
        lambda: (d := js(driver, bar)) and d["status"] == "completed" and d, 60, "download done"
    )
    sizes = [int(v) for v in done["seen"].split(",")]
    assert sizes == sorted(sizes) and sizes[-1] == int(done["total"]) > 0
    assert any(0 < v < sizes[-1] for v in sizes), sizes
    screenshot(driver, "ops")
    no_errors(driver, "ops")


async def test_dashboard_pages_in_chromium(dash: tuple[Running, Path]) -> None:
    running, _ = dash
    base = f"http://127.0.0.1:{running.stack.bridge.port}"

    def drive() -> None:
        driver = chrome()
        try:
            drive_map(driver, base)
            drive_search_path_mixes(driver, base)
            drive_ops(driver, base)
        finally:
            driver.quit()

    await asyncio.to_thread(drive)
    assert (ARTIFACTS / "dashboard" / "map.png").stat().st_size > 10_000
    assert shutil.which("chromium") is not None


async def test_dashboard_asks_for_the_api_key_and_keeps_it_in_the_tab(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    key = "s3cret-dashboard-key"
    r = await start_running(
        make_settings(tmp_path / "data", tiny_model_dir, server={"api_key": key})
    )
    try:
        await store_library(r.app, build())
        base = f"http://127.0.0.1:{r.stack.bridge.port}"
        await asyncio.to_thread(drive_key_prompt, base, key)
    finally:
        await stop_running(r)


def drive_key_prompt(base: str, key: str) -> None:
    # the page and its files are public; the API is not
    with urllib.request.urlopen(base + "/ui/app.js") as page:
        assert page.headers["Content-Type"].startswith("text/javascript")
    try:
        api(base, "GET", "/map")
        raise AssertionError("the API answered without a key")
    except urllib.error.HTTPError as err:
        assert err.code == 401
    driver = chrome()
    try:
        driver.get(base + "/")
        dialog = wait_for(lambda: driver.find_element(By.ID, "key-dialog"))
        wait_for(lambda: dialog.get_attribute("open") is not None, message="key prompt")
        screenshot(driver, "key-prompt")
        driver.find_element(By.ID, "key-input").send_keys(key)
        driver.find_element(By.ID, "key-submit").click()
        canvas = wait_for(lambda: driver.find_element(By.ID, "map-canvas"))
        wait_for(lambda: canvas.get_attribute("data-drawn") == "90", message="map with the key")
        assert js(driver, "return sessionStorage.getItem('insight.apiKey')") == key
        assert js(driver, "return localStorage.length") == 0  # never kept beyond the tab
        no_errors(driver, "map behind a key")
        driver.refresh()  # same tab: no prompt again
        canvas = wait_for(lambda: driver.find_element(By.ID, "map-canvas"))
        wait_for(lambda: canvas.get_attribute("data-drawn") == "90", message="map after reload")
        assert driver.find_element(By.ID, "key-dialog").get_attribute("open") is None
        no_errors(driver, "reload")
        # a wrong key is refused by the API and asked for again
        js(driver, "sessionStorage.setItem('insight.apiKey', 'wrong')")
        driver.refresh()
        dialog = wait_for(lambda: driver.find_element(By.ID, "key-dialog"))
        wait_for(lambda: dialog.get_attribute("open") is not None, message="prompt again")
        assert "refused" in dialog.text
        errors = console_errors(driver)
        assert errors and all("401" in e for e in errors), errors
        driver.find_element(By.ID, "key-input").send_keys(key)
        driver.find_element(By.ID, "key-submit").click()
        canvas = wait_for(lambda: driver.find_element(By.ID, "map-canvas"))
        wait_for(lambda: canvas.get_attribute("data-drawn") == "90", message="map after retry")
        no_errors(driver, "after the right key")
    finally:
        driver.quit()
