"""How the file store answers a filtered search: scan the matching rows, or walk the HNSW graph.

An exact scan costs about one unit per matching row (their int8 codes gathered and compared,
the best few rescored in float32). A filtered HNSW walk must fetch enough neighbours that the
``limit`` best matches are among them: ``ANN_OVERFETCH`` times the expected depth of the
``limit``-th match, each fetched neighbour costing ``CANDIDATE_COST`` units. Both constants are
measured with ``bench/storage.py`` (100 k clustered 512-d vectors, 2 cores): HNSW at 3× the
depth kept only 97 % of the true top 10 at 10 % selectivity, at 8× 99.2 %; one fetched
candidate took as long as ~40 scanned rows (before rows were gathered with ``np.take``, which
made the scan ~3× cheaper again: the constant errs towards the walk). The plan takes the
cheaper; at 100 k rows the scan wins below ~18 % selectivity, where it is also exact.
"""

from __future__ import annotations

import math

ANN_OVERFETCH = 8
CANDIDATE_COST = 40.0


def ann_depth(limit: int, total: int, matching: int) -> int:
    """Neighbours to fetch so the filtered top ``limit`` is among them (recall ≥ 0.99)."""
    return math.ceil(ANN_OVERFETCH * limit * total / max(matching, 1)) + 16


def prefer_scan(limit: int, total: int, matching: int) -> bool:
    """Whether scanning the ``matching`` rows is cheaper than the over-fetching walk."""
    return matching <= CANDIDATE_COST * min(ann_depth(limit, total, matching), total)
