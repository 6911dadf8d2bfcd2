"""The adversarial harness itself: a served process answers and stops within the bound."""

from __future__ import annotations

import json
import urllib.request

from tests.adversarial.conftest import Served


def test_served_answers_health_and_reports_rss(served: Served) -> None:
    req = urllib.request.Request(f"{served.base}/health", headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert json.load(resp)["model_loaded"] is True
    assert 10 * 2**20 < served.rss_bytes() < 4 * 2**30
    assert served.stop() < 10
