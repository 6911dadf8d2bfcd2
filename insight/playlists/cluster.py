"""Cluster playlists: spherical k-means over the library, named, with stable ids.

A new run starts from the previous playlists' centroids when there are any (so the same
library gives the same groups), then each new cluster takes the id of the old playlist it
shares most tracks with (greedy on overlap, largest first); the rest get fresh ids. Names come
from the dominant moods and genre of the members.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from insight.playlists.vectors import first_str

ITERATIONS = 40
RESTARTS = 4


def _plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding on cosine distance."""
    n = x.shape[0]
    centres = [x[int(rng.integers(n))]]
    dist = 1.0 - x @ centres[0]
    for _ in range(1, k):
        p = np.clip(dist, 0, None) ** 2
        total = float(p.sum())
        i = int(rng.choice(n, p=p / total)) if total > 0 else int(rng.integers(n))
        centres.append(x[i])
        dist = np.minimum(dist, 1.0 - x @ x[i])
    return np.stack(centres)


def _lloyd(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    labels = np.zeros(x.shape[0], dtype=np.int64)
    for it in range(ITERATIONS):
        sims = x @ c.T
        new = sims.argmax(axis=1)
        if it and np.array_equal(new, labels):
            break
        labels = new
        for j in range(c.shape[0]):
            members = x[labels == j]
            if len(members):
                s = members.sum(axis=0)
                c[j] = s / (np.linalg.norm(s) or 1.0)
    score = float((x @ c.T).max(axis=1).sum())
    return labels, c, score


def kmeans(
    x: np.ndarray, k: int, seed: int = 0, init: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and unit centroids; warm-started from ``init`` when given, else best of restarts."""
    k = max(1, min(k, x.shape[0]))
    if init is not None and init.shape[0] == k:
        labels, c, _ = _lloyd(x, init.astype(np.float32).copy())
        return labels, c
    rng = np.random.default_rng(seed)
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for _ in range(RESTARTS):
        run = _lloyd(x, _plus_plus(x, k, rng).astype(np.float32))
        if best is None or run[2] > best[2]:
            best = run
    assert best is not None
    return best[0], best[1]


def warm_start(
    x: np.ndarray, ids: list[str], old: dict[str, list[str]], k: int
) -> np.ndarray | None:
    """Centroids of the previous playlists from today's vectors (None when they do not fit k)."""
    row = {t: i for i, t in enumerate(ids)}
    cents = []
    for members in old.values():
        idx = [row[t] for t in members if t in row]
        if idx:
            s = x[idx].sum(axis=0)
            cents.append(s / (np.linalg.norm(s) or 1.0))
    return np.stack(cents) if len(cents) == k else None


def match_ids(
    labels: np.ndarray, ids: list[str], old: dict[str, list[str]], k: int
) -> dict[int, str]:
    """New cluster index → old playlist id, greedily by shared tracks (largest overlap first)."""
    owner = {t: pid for pid, members in old.items() for t in members}
    overlap: Counter[tuple[int, str]] = Counter()
    for t, lab in zip(ids, labels, strict=True):
        if t in owner:
            overlap[(int(lab), owner[t])] += 1
    taken: dict[int, str] = {}
    used: set[str] = set()
    for (lab, pid), _n in overlap.most_common():
        if lab not in taken and pid not in used:
            taken[lab] = pid
            used.add(pid)
        if len(taken) == k:
            break
    return taken


def name_of(payloads: list[dict[str, Any]]) -> tuple[str, str]:
    """A name from the dominant moods and genre, and a one-line description."""
    moods: Counter[str] = Counter()
    genres: Counter[str] = Counter()
    for p in payloads:
        if (m := first_str(p, "primary_mood")) is not None:
            moods[m] += 1
        if (g := first_str(p, "genres")) is not None:
            genres[g] += 1
    top_moods = [m for m, _ in moods.most_common(2)]
    top_genre = genres.most_common(1)[0][0] if genres else None
    head = " & ".join(m.replace("_", " ").title() for m in top_moods) or "Mixed"
    name = f"{head} · {top_genre}" if top_genre else head
    desc = f"{len(payloads)} tracks"
    if top_moods:
        desc += f", mostly {', '.join(top_moods)}"
    if genres:
        desc += f"; genres: {', '.join(g for g, _ in genres.most_common(3))}"
    return name, desc


def kept_share(ids: list[str], labels: np.ndarray, mapping: dict[int, str], old: dict) -> float:
    """Share of the tracks of the previous run that stay in the playlist they were in."""
    owner = {t: pid for pid, members in old.items() for t in members}
    shared = [(t, int(lab)) for t, lab in zip(ids, labels, strict=True) if t in owner]
    if not shared:
        return 0.0
    return sum(mapping.get(lab) == owner[t] for t, lab in shared) / len(shared)
