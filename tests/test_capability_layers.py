"""Storage and the audio front-end stand below the API: they never import its schemas, and the
API's filter reaches a store only through the one converter (``search/filter.py``)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from insight.schemas import SearchFilter
from insight.search.filter import store_where
from insight.storage.where import Where, where

ROOT = Path(__file__).resolve().parent.parent / "insight"
BELOW_API = [
    *sorted(ROOT.glob("storage/*.py")),
    ROOT / "inference" / "audio.py",
    ROOT / "vectors.py",
    ROOT / "audio_format.py",
]
API_MODULES = ("insight.schemas", "insight.api", "insight.handlers", "insight.app")


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, also inside functions and ``if TYPE_CHECKING``."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


@pytest.mark.parametrize("path", BELOW_API, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_below_the_api_does_not_import_it(path: Path) -> None:
    bad = {m for m in imported(path) if m.startswith(API_MODULES)}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_store_filter_takes_every_field_of_the_api_filter() -> None:
    assert set(inspect.signature(where).parameters) == set(SearchFilter.model_fields)


def test_converter_normalises_every_field() -> None:
    flt = SearchFilter(
        artists=["Björk", "BJÖRK"],
        genres=["Rock"],
        album="OK Computer",
        exclude_ids=["a", "b"],
        moods=["calm"],
        exclude_moods=["sad"],
        min_valence=0.1,
        max_valence=0.9,
        min_arousal=0.2,
        max_arousal=None,
        model_id="org/m",
        min_bpm=None,
        max_bpm=130,
        keys=["A Minor"],
    )
    assert store_where(flt) == Where(
        artists=frozenset({"björk"}),
        genres=frozenset({"rock"}),
        album="ok computer",
        exclude_ids=frozenset({"a", "b"}),
        moods=frozenset({"calm"}),
        exclude_moods=frozenset({"sad"}),
        valence=(0.1, 0.9),
        arousal=(0.2, None),
        model_id="org/m",
        bpm=(None, 130),
        keys=frozenset({"a minor"}),
    )


def test_a_filter_that_constrains_nothing_is_none() -> None:
    assert store_where(None) is None
    assert store_where(SearchFilter()) is None
    assert store_where(SearchFilter(artists=[], genres=[], exclude_ids=[])) is None
