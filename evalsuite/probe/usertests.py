"""Users' own probe tests in the results file: each test's verdict is one sample of the ``user`` battery, its case
the test's node id without the column (``test_x.py::test_a[demo-hi]`` -> ``test_x.py::test_a[hi]``), so the same
test under two adapters, or under an adapter and its baseline, pairs up for McNemar like a battery case."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from evalsuite.probe.asserts import ProbeAssertionError, reply_sample
from evalsuite.probe.session import Reply
from evalsuite.results.schema import Sample, ScorerRef

PYTEST_SCORER = ScorerRef("pytest")  # the test's own verdict: it passed, or raised


def user_sample(nodeid: str, column: str, replies: Sequence[Reply], error: BaseException | None) -> Sample | None:
    """The sample of one user test: the failing evalsuite assertion's, else the last reply with the test's verdict
    (``error``: what the test raised). A test that never chatted has no output to record: None. A test that got a
not-run reply (the stall guard stopped a stuck engine) is a not-run sample: no verdict."""
    case = case_id(nodeid, column)
    stopped = next((r for r in replies if r.generation.not_run is not None), None)
    if stopped is not None:  # a reply the model was not let to finish: the test has no verdict, whatever it raised
        return reply_sample(stopped, PYTEST_SCORER, None, None, details={"not_run": stopped.generation.not_run},
                            case=case)
    if isinstance(error, ProbeAssertionError):
        return replace(error.sample, case=case)
    if not replies:
        return None
    details = {} if error is None else {"error": f"{type(error).__name__}: {error}".splitlines()[0][:500]}
    passed = error is None
    return reply_sample(replies[-1], PYTEST_SCORER, passed, float(passed), details=details, case=case)


def case_id(nodeid: str, column: str) -> str:
    """The node id without the column's part of the parameter id."""
    head, bracket, ids = nodeid.partition("[")
    if not bracket:
        return nodeid
    parts = ids[:-1]
    if parts == column:
        return head
    if parts.startswith(column + "-"):
        return f"{head}[{parts[len(column) + 1:]}]"
    if parts.endswith("-" + column):
        return f"{head}[{parts[:-len(column) - 1]}]"
    return f"{head}[{parts.replace(f'-{column}-', '-', 1)}]"
