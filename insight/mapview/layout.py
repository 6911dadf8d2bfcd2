"""A 2-D layout of unit vectors that scales to 100 k tracks on 2 cores with numpy alone.

Landmark t-SNE:
1. ``L`` landmarks (≤ 256) are spherical k-means centroids of a sample (≤ 8 k rows);
2. the landmarks are laid out with exact t-SNE (O(L²) per iteration: milliseconds), which keeps
   clusters apart where PCA would fold them onto each other, then pushed apart where they
   crowd (``spread_out``) so a cluster gets room for its tracks;
3. every track is placed from its 3 nearest landmarks (softmax of cosine) plus a small offset,
   a fixed random projection of its residual to the nearest landmark, so tracks of one
   landmark spread out by how they differ.

Step 3 is a pure function of the stored layout, so a new track is placed without moving any
other point (incremental), and the same vectors and seed always give the same map. Cost is
dominated by two matrix products: n×L×d for placement and sample×L×d per k-means iteration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_LANDMARKS = 256
SAMPLE = 8_000
KMEANS_ITERS = 8
TSNE_ITERS = 400
NEIGHBOURS = 3
TEMPERATURE = 0.05
SPREAD = 0.35
MIN_SPREAD = 0.02
GAP = 0.5  # landmarks keep at least GAP / sqrt(L) apart
CHUNK = 16_384


@dataclass
class Layout:
    landmarks: np.ndarray  # [L, d] unit
    coords: np.ndarray  # [L, 2] in [-1, 1]
    projection: np.ndarray  # [d, 2]
    spread: float
    seed: int

    def place(self, x: np.ndarray) -> np.ndarray:
        """2-D positions of unit rows ``x`` (no other point moves)."""
        out = np.zeros((x.shape[0], 2), dtype=np.float32)
        k = min(NEIGHBOURS, self.landmarks.shape[0])
        for s in range(0, x.shape[0], CHUNK):
            part = x[s : s + CHUNK]
            sims = part @ self.landmarks.T
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k > 1 else sims.argmax(1)[:, None]
            ts = np.take_along_axis(sims, top, axis=1)
            w = np.exp((ts - ts.max(axis=1, keepdims=True)) / TEMPERATURE)
            w /= w.sum(axis=1, keepdims=True)
            pos = np.einsum("nk,nkc->nc", w, self.coords[top])
            nearest = top[np.arange(len(part)), ts.argmax(axis=1)]
            resid = part - self.landmarks[nearest]
            out[s : s + CHUNK] = pos + self.spread * (resid @ self.projection)
        return out

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            landmarks=self.landmarks,
            coords=self.coords,
            projection=self.projection,
            spread=np.array(self.spread),
            seed=np.array(self.seed),
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Layout:
        with np.load(path) as z:
            return cls(
                z["landmarks"], z["coords"], z["projection"], float(z["spread"]), int(z["seed"])
            )


def landmarks_of(x: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Spherical k-means centroids of a sample of ``x``."""
    sample = x[rng.choice(x.shape[0], min(SAMPLE, x.shape[0]), replace=False)]
    c = sample[rng.choice(sample.shape[0], count, replace=False)].copy()
    for _ in range(KMEANS_ITERS):
        labels = (sample @ c.T).argmax(axis=1)
        onehot = np.zeros((sample.shape[0], count), dtype=np.float32)
        onehot[np.arange(sample.shape[0]), labels] = 1.0
        sums = onehot.T @ sample
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        c = np.where(norms > 0, sums / np.where(norms > 0, norms, 1.0), c)
    return c.astype(np.float32)


def _affinities(d2: np.ndarray, perplexity: float) -> np.ndarray:
    """Symmetric t-SNE input probabilities (binary search of each row's bandwidth)."""
    n = d2.shape[0]
    target = np.log(perplexity)
    p = np.zeros_like(d2)
    for i in range(n):
        row = np.delete(d2[i], i)
        lo, hi, beta = 0.0, np.inf, 1.0
        for _ in range(50):
            e = np.exp(-(row - row.min()) * beta)
            s = e.sum()
            h = np.log(s) + beta * float((row - row.min()) @ e) / s
            if abs(h - target) < 1e-4:
                break
            if h > target:
                lo, beta = beta, beta * 2 if hi == np.inf else (beta + hi) / 2
            else:
                hi, beta = beta, (beta + lo) / 2
        p[i, np.arange(n) != i] = e / s
    return (p + p.T) / (2 * n)


def tsne(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exact t-SNE of a few hundred rows to 2-D."""
    n = x.shape[0]
    if n < 3:
        return np.array([[-0.5, 0.0], [0.5, 0.0]][:n], dtype=np.float64)
    d2 = np.clip(2.0 - 2.0 * (x @ x.T), 0, None).astype(np.float64)
    p = np.maximum(_affinities(d2, min(30.0, (n - 1) / 3.0)), 1e-12)
    y = rng.standard_normal((n, 2)) * 1e-2
    gains, update = np.ones_like(y), np.zeros_like(y)
    lr = max(n / 12.0, 50.0)
    for it in range(TSNE_ITERS):
        exaggeration, momentum = (12.0, 0.5) if it < 100 else (1.0, 0.8)
        sq = (y * y).sum(axis=1)
        num = 1.0 / (1.0 + sq[:, None] + sq[None, :] - 2.0 * y @ y.T)
        np.fill_diagonal(num, 0.0)
        q = np.maximum(num / num.sum(), 1e-12)
        pq = (exaggeration * p - q) * num
        grad = 4.0 * ((np.diag(pq.sum(axis=1)) - pq) @ y)
        gains = np.where(np.sign(grad) != np.sign(update), gains + 0.2, gains * 0.8).clip(0.01)
        update = momentum * update - lr * gains * grad
        y = y + update
        y -= y.mean(axis=0)
    return y


def spread_out(y: np.ndarray, rounds: int = 60) -> np.ndarray:
    """Fit ``y`` into [-0.9, 0.9]² and push apart landmarks closer than ``GAP / sqrt(L)``.

    t-SNE draws a tight cluster as a dot far from the others; here a cluster's landmarks make
    room for each other (overlap removal, as in force layouts), so its tracks get an area
    proportional to their number while the arrangement of the clusters stays.
    """
    n = y.shape[0]
    y = y - y.mean(axis=0)
    y = 0.9 * y / (float(np.abs(y).max()) or 1.0)
    if n < 2:
        return y
    dmin = GAP / np.sqrt(n)
    for _ in range(rounds):
        diff = y[:, None, :] - y[None, :, :]
        dist = np.sqrt((diff**2).sum(axis=2))
        np.fill_diagonal(dist, np.inf)
        push = np.clip(dmin - dist, 0.0, None)
        if not push.any():
            break
        y = y + 0.5 * ((push / np.maximum(dist, 1e-9))[:, :, None] * diff).sum(axis=1)
        y = 0.9 * (y - y.mean(axis=0)) / (float(np.abs(y - y.mean(axis=0)).max()) or 1.0)
    return y


def fit(x: np.ndarray, seed: int = 0) -> Layout:
    """A layout of unit rows ``x`` (n ≥ 1)."""
    rng = np.random.default_rng(seed)
    n, d = x.shape
    count = max(1, min(MAX_LANDMARKS, n // 3 if n >= 6 else n))
    lm = landmarks_of(x, count, rng)
    coords = spread_out(tsne(lm, rng)).astype(np.float32)
    if count > 1:
        gaps = np.linalg.norm(coords[:, None] - coords[None], axis=2)
        np.fill_diagonal(gaps, np.inf)
        spread = max(SPREAD * float(np.median(gaps.min(axis=1))), MIN_SPREAD)
    else:
        spread = 0.5
    proj = (rng.standard_normal((d, 2)) * np.sqrt(d / 2.0)).astype(np.float32)
    resid = x[rng.choice(n, min(n, 2000), replace=False)]
    scale = float(
        np.percentile(np.linalg.norm((resid - lm[(resid @ lm.T).argmax(1)]) @ proj, axis=1), 90)
    )
    return Layout(lm, coords, proj / (scale or 1.0), spread, seed)
