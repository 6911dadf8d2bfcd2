"""Metadata sentence and tokenizer rules (pad id, dynamic padding, truncation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from insight.errors import NotReady
from insight.inference.text import Tokenizer, format_track_text
from insight.testing import build_tiny_clap


def test_format_track_text_as_the_original() -> None:
    assert (
        format_track_text(
            "Bohemian Rhapsody", ["Queen"], "A Night at the Opera", ["Rock", "Progressive Rock"]
        )
        == "Queen - Bohemian Rhapsody. Album: A Night at the Opera. Genres: Rock, Progressive Rock"
    )
    assert format_track_text("Track", [], None, []) == "Unknown Artist - Track"
    assert (
        format_track_text("Under Pressure", ["Queen", "David Bowie"], "Hot Space", ["Rock"])
        == "Queen, David Bowie - Under Pressure. Album: Hot Space. Genres: Rock"
    )
    assert format_track_text("X", ["A"], "", ["Jazz"]) == "A - X. Genres: Jazz"


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    return Tokenizer.from_model_dir(build_tiny_clap(tmp_path_factory.mktemp("tiny")))


def test_pad_id_and_dynamic_padding(tok: Tokenizer) -> None:
    assert tok.pad_id == 1
    assert tok.max_length == 77
    ids, mask = tok.encode_batch(["rock", "calm piano music for a rainy day"])
    assert ids.dtype == np.int64 and mask.dtype == np.int64
    n_short = int(mask[0].sum())
    assert ids.shape[1] == int(mask[1].sum())  # padded to the longest, not to 77
    assert ids[0, 0] == 0 and ids[0, n_short - 1] == 2  # <s> … </s>
    assert np.all(ids[0, n_short:] == 1) and np.all(mask[0, n_short:] == 0)
    one, _ = tok.encode_batch(["rock"])
    assert one.shape[1] == n_short


def test_distinct_texts_distinct_ids_and_empty(tok: Tokenizer) -> None:
    ids, _ = tok.encode_batch(["jazz", "metal", ""])
    assert not np.array_equal(ids[0], ids[1])
    assert list(ids[2, :2]) == [0, 2]


def test_truncation_keeps_end_token(tok: Tokenizer) -> None:
    ids, mask = tok.encode_batch(["rock and roll " * 200])
    assert ids.shape == (1, 77)
    assert ids[0, 0] == 0 and ids[0, -1] == 2
    assert mask.sum() == 77


def test_missing_tokenizer_is_not_ready(tmp_path: Path) -> None:
    with pytest.raises(NotReady, match=r"tokenizer\.json is missing"):
        Tokenizer.from_model_dir(tmp_path)
