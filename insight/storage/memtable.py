"""The live rows of one file-store collection in memory.

Slots are the usearch labels: key ↔ slot, payloads, a float32 matrix of the vectors (exact
rescoring and exact scans of small filtered subsets), an int8 copy of the unit vectors (scans of
large filtered subsets: a quarter of the memory to gather, the top candidates then rescored in
float32) and small inverted indexes so a filter becomes a boolean mask over slots without
looking at every payload. Not thread-safe by itself: the file
store guards it with a readers/writer lock.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import onnxruntime  # noqa: F401  (must load before usearch: the reverse order segfaults)
from usearch.index import MetricKind
from usearch.index import search as exact_search

from insight.storage.where import Where, fold, number, str_list

_INVERTED = ("artists", "genres", "album", "moods", "primary_mood", "model_id", "key")
_NUMERIC = ("valence", "arousal", "bpm")
# int8 scan: candidates per wanted result rescored in float32 (recall@10 1.000 measured at 4)
CODE_CANDIDATES = 4
CODE_MIN_ROWS = 2048  # below this, float32 directly is as fast


def int8_codes(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled so their largest component is ±127 (the direction is what a cosine sees)."""
    v = np.atleast_2d(np.asarray(vectors, np.float32))
    peak = np.max(np.abs(v), axis=1, keepdims=True)
    scale = np.divide(127.0, peak, out=np.zeros_like(peak), where=peak > 0)
    return np.clip(np.rint(v * scale), -127, 127).astype(np.int8)


def _terms(payload: dict[str, Any]) -> dict[str, list[str]]:
    album, key = payload.get("album"), payload.get("key")
    return {
        "artists": [fold(a) for a in str_list(payload.get("artists"))],
        "genres": [fold(g) for g in str_list(payload.get("genres"))],
        "album": [fold(album)] if isinstance(album, str) else [],
        "moods": str_list(payload.get("moods")),
        "primary_mood": str_list(payload.get("primary_mood")),
        "model_id": str_list(payload.get("model_id")),
        "key": [fold(key)] if isinstance(key, str) else [],
    }


class MemTable:
    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.keys: list[str | None] = []  # by slot; len == high-water mark
        self.slot_of: dict[str, int] = {}
        self.payloads: list[dict[str, Any] | None] = []
        self.free: set[int] = set()
        self.vectors = np.zeros((0, dim), np.float32)
        self.codes = np.zeros((0, dim), np.int8)
        self.norms = np.zeros(0, np.float32)
        self.alive = np.zeros(0, np.bool_)
        self.numeric = {f: np.zeros(0, np.float64) for f in _NUMERIC}  # NaN: no number
        self.inv: dict[str, dict[str, set[int]]] = {f: {} for f in _INVERTED}
        # the slots of a term as an array, made on first use and dropped when the term changes
        # (np.fromiter over a 10 k set took ~1 ms of a filtered search)
        self._slot_arrays: dict[tuple[str, str], np.ndarray] = {}
        self._sorted_keys: list[str] | None = None

    def __len__(self) -> int:
        return len(self.slot_of)

    @property
    def high_water(self) -> int:
        return len(self.keys)

    def plan_slots(self, n: int) -> list[int]:
        """Slots for ``n`` new keys (freed ones first); nothing is taken until :meth:`put`."""
        reuse = sorted(self.free)[:n]
        hw = self.high_water
        return reuse + list(range(hw, hw + n - len(reuse)))

    def _grow(self, size: int) -> None:
        cap = self.vectors.shape[0]
        if size <= cap:
            return
        new_cap = max(size, cap * 2, 1024)

        def grown(a: np.ndarray, fill: Any) -> np.ndarray:
            out = np.full((new_cap, *a.shape[1:]), fill, a.dtype)
            out[:cap] = a
            return out

        self.vectors = grown(self.vectors, 0.0)
        self.codes = grown(self.codes, 0)
        self.norms = grown(self.norms, 0.0)
        self.alive = grown(self.alive, False)
        self.numeric = {f: grown(col, np.nan) for f, col in self.numeric.items()}

    def put(self, slot: int, key: str, payload: dict[str, Any], vector: np.ndarray) -> None:
        self._grow(slot + 1)
        while self.high_water <= slot:
            self.free.add(self.high_water)
            self.keys.append(None)
            self.payloads.append(None)
        old = self.keys[slot]
        if old is not None:
            self._unindex(slot)
            if old != key:
                del self.slot_of[old]
        self.free.discard(slot)
        self.keys[slot] = key
        self.slot_of[key] = slot
        self.payloads[slot] = payload
        self.vectors[slot] = vector
        self.codes[slot] = int8_codes(vector)[0]
        self.norms[slot] = float(np.linalg.norm(vector))
        self.alive[slot] = True
        for f, col in self.numeric.items():
            x = number(payload.get(f))
            col[slot] = np.nan if x is None else x
        for field, terms in _terms(payload).items():
            inv = self.inv[field]
            for t in terms:
                inv.setdefault(t, set()).add(slot)
                self._slot_arrays.pop((field, t), None)
        if old != key:
            self._sorted_keys = None

    def bulk_load(
        self,
        keys: list[str],
        labels: np.ndarray,
        payloads: list[dict[str, Any]],
        vectors: np.ndarray,
    ) -> None:
        """Fill an empty table at once (opening a store): ~10x faster than ``put`` per row."""
        assert not self.slot_of, "bulk_load needs an empty table"
        if not keys:
            return
        hw = int(labels.max()) + 1
        self._grow(hw)
        self.keys = [None] * hw
        self.payloads = [None] * hw
        idx = labels.astype(np.int64)
        for i, (key, payload) in enumerate(zip(keys, payloads, strict=True)):
            slot = int(idx[i])
            self.keys[slot] = key
            self.payloads[slot] = payload
            self.slot_of[key] = slot
            for field, terms in _terms(payload).items():
                inv = self.inv[field]
                for t in terms:
                    inv.setdefault(t, set()).add(slot)
        self.vectors[idx] = vectors
        self.codes[idx] = int8_codes(vectors)
        self.norms[idx] = np.linalg.norm(vectors, axis=1)
        self.alive[idx] = True

        def col(field: str) -> np.ndarray:
            vals = [number(p.get(field)) for p in payloads]
            return np.array([np.nan if v is None else v for v in vals], np.float64)

        for f, column in self.numeric.items():
            column[idx] = col(f)
        self.free = set(range(hw)) - set(self.slot_of.values())
        self._slot_arrays.clear()
        self._sorted_keys = None

    def remove(self, key: str) -> int | None:
        slot = self.slot_of.pop(key, None)
        if slot is None:
            return None
        self._unindex(slot)
        self.keys[slot] = None
        self.payloads[slot] = None
        self.alive[slot] = False
        self.free.add(slot)
        self._sorted_keys = None
        return slot

    def _unindex(self, slot: int) -> None:
        payload = self.payloads[slot]
        if payload is None:
            return
        for field, terms in _terms(payload).items():
            inv = self.inv[field]
            for t in terms:
                self._slot_arrays.pop((field, t), None)
                s = inv.get(t)
                if s is not None:
                    s.discard(slot)
                    if not s:
                        del inv[t]

    def sorted_keys(self) -> list[str]:
        keys = self._sorted_keys
        if keys is None:
            keys = self._sorted_keys = sorted(self.slot_of)
        return keys

    # --- search helpers -------------------------------------------------------------------

    def _any_of(self, field: str, values: frozenset[str]) -> np.ndarray:
        out = np.zeros(self.high_water, np.bool_)
        inv = self.inv[field]
        for v in values:
            arr = self._slot_arrays.get((field, v))
            if arr is None:
                slots = inv.get(v)
                if not slots:
                    continue
                arr = self._slot_arrays[(field, v)] = np.fromiter(slots, np.int64, len(slots))
            out[arr] = True
        return out

    @staticmethod
    def _in_range(col: np.ndarray, bounds: tuple[float | None, float | None]) -> np.ndarray:
        lo, hi = bounds
        ok = ~np.isnan(col)
        if lo is not None:
            ok &= col >= lo
        if hi is not None:
            ok &= col <= hi
        return ok

    def simplify(self, c: Where | None) -> Where | None:
        """``c`` without a model constraint every live row meets (the usual case: one model);
        None when nothing is left, so search takes the unfiltered path."""
        if c is None or c.model_id is None:
            return c
        if len(self.inv["model_id"].get(c.model_id, ())) != len(self):
            return c
        rest = replace(c, model_id=None)
        return None if rest == Where() else rest

    def mask(self, c: Where) -> np.ndarray:
        """Boolean mask over slots of the live rows that pass ``c`` (as file_match.matches)."""
        hw = self.high_water
        m = self.alive[:hw].copy()
        if c.artists is not None:
            m &= self._any_of("artists", c.artists)
        if c.genres is not None:
            m &= self._any_of("genres", c.genres)
        if c.album is not None:
            m &= self._any_of("album", frozenset({c.album}))
        if c.moods is not None:
            m &= self._any_of("moods", c.moods)
        if c.exclude_moods:
            m &= ~self._any_of("moods", c.exclude_moods)
            m &= ~self._any_of("primary_mood", c.exclude_moods)
        if c.model_id is not None:
            m &= self._any_of("model_id", frozenset({c.model_id}))
        if c.keys is not None:
            m &= self._any_of("key", c.keys)
        for f, bounds in (("valence", c.valence), ("arousal", c.arousal), ("bpm", c.bpm)):
            if bounds is not None:
                m &= self._in_range(self.numeric[f][:hw], bounds)
        for key in c.exclude_ids:
            slot = self.slot_of.get(key)
            if slot is not None:
                m[slot] = False
        return m

    def scores(self, slots: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Exact cosine similarity of ``query`` (unit length) with the rows at ``slots``."""
        # einsum, not BLAS: OpenBLAS threads make small mat-vecs 10x slower on a busy box
        # np.take, not fancy indexing: the same rows ~5x faster (one copy loop, no index checks
        # per element)
        dots = np.einsum("ij,j->i", np.take(self.vectors, slots, axis=0), query)
        norms = self.norms[slots]
        return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)

    def top(self, slots: np.ndarray, query: np.ndarray, limit: int) -> list[tuple[int, float]]:
        """Exact top ``limit`` of ``slots`` by cosine, best first (ties by slot)."""
        if limit <= 0 or slots.size == 0:
            return []
        s = self.scores(slots, query)
        if s.size > limit:
            part = np.argpartition(-s, limit - 1)[:limit]
            slots, s = slots[part], s[part]
        order = np.lexsort((slots, -s))
        return [(int(slots[i]), float(s[i])) for i in order]

    def scan(self, slots: np.ndarray, query: np.ndarray, limit: int) -> list[tuple[int, float]]:
        """Exact top ``limit`` of ``slots``, for large subsets through the int8 copy: its best
        ``CODE_CANDIDATES * limit`` are rescored in float32."""
        want = CODE_CANDIDATES * limit + 8
        if slots.size <= max(CODE_MIN_ROWS, want):
            return self.top(slots, query, limit)
        found = exact_search(
            np.take(self.codes, slots, axis=0),
            int8_codes(query)[0],
            want,
            MetricKind.Cos,
            exact=True,
            threads=1,
        )
        return self.top(slots[np.asarray(found.keys, np.int64)], query, limit)
