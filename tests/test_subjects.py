"""subjects.md documents every subject the code uses, and nothing else."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from insight.bus import docs, subjects
from insight.handlers import all_endpoints

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "subjects.md").read_text()
SUBJECT_RE = re.compile(r"`((?:insight|\$SRV)\.[^`\s]*)`")


def code_constants() -> dict[str, str]:
    return {
        name: value
        for name, value in vars(subjects).items()
        if isinstance(value, str) and name.isupper() and value.startswith("insight.")
    }


def documented() -> set[str]:
    return set(SUBJECT_RE.findall(DOC))


def test_endpoint_table_is_up_to_date() -> None:
    assert docs.render(DOC) == DOC, "run `python -m insight.bus.docs` to regenerate"
    for ep in all_endpoints():
        assert f"`{ep.subject}`" in DOC


def test_every_code_subject_is_documented() -> None:
    doc = documented()
    for name, value in code_constants().items():
        assert any(d == value or d.startswith(value + ".") for d in doc), (name, value)
    assert "`insight.audio.<session_id>`" in DOC
    assert subjects.audio_subject("S") == "insight.audio.S"
    assert f"`{subjects.worker_subject('<worker_id>', 'end')}`" in DOC
    assert f"`{subjects.worker_subject('<worker_id>', 'abort')}`" in DOC
    for stream in (
        subjects.EVENTS_STREAM,
        subjects.DLQ_STREAM,
        subjects.AUDIO_STREAM,
        subjects.SESSIONS_BUCKET,
        subjects.VERSIONS_BUCKET,
        subjects.SCAN_STREAM,
        subjects.SCAN_CONSUMER,
        subjects.INFER_QUEUE_GROUP,
    ):
        assert f"`{stream}`" in DOC


def test_every_documented_subject_is_used() -> None:
    endpoint_subjects = {ep.subject for ep in all_endpoints()}
    constants = set(code_constants().values())
    prefixes = {
        subjects.AUDIO_PREFIX,
        subjects.DLQ_PREFIX,
        subjects.WORKER_PREFIX,
        subjects.INFER_PREFIX,
        subjects.SCAN_RESULT_PREFIX,
    }
    for subject in documented():
        if subject.startswith("$SRV"):
            continue
        known = (
            subject in endpoint_subjects
            or subject in constants
            or any(subject.startswith(p + ".") for p in prefixes)
        )
        assert known, f"{subject} is documented but not used by the code"


def test_no_subject_literals_outside_the_subjects_module() -> None:
    """Subjects are named once, in insight/bus/subjects.py (and the endpoint table)."""
    offenders = []
    for path in (ROOT / "insight").rglob("*.py"):
        if path.name in ("subjects.py", "api.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and re.fullmatch(
                    r"insight\.(events|audio|dlq|notify|worker|v1|internal)\.[\w.>*-]+", node.value
                )
            ):
                offenders.append(f"{path.relative_to(ROOT)}: {node.value}")
    assert not offenders
