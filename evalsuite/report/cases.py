"""Per-case rows: verdict flips first, each failing output diffed against the expected answer, the reason for
every failure, and prompts a reader can read (long contexts cut in the middle, whole conversations).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from evalsuite.report.columns import Column
from evalsuite.report.textdiff import Segment, diff_segments
from evalsuite.results.schema import Sample

MAX_OUTPUT_CHARS = 4000
PROMPT_HEAD = 160  # a SQuAD prompt is "<system> <context> <question>": keep its start and its end
PROMPT_TAIL = 240
PASS_TO_FAIL, FAIL_TO_PASS = "pass->fail", "fail->pass"  # the gates' Flip.direction words


@dataclass(frozen=True)
class Clip:
    """A text with its middle cut out (``cut`` characters), so the end of a long prompt survives."""

    head: str
    cut: int = 0
    tail: str = ""

    @property
    def text(self) -> str:
        return self.head if not self.cut else f"{self.head} … [{self.cut:,} characters cut] … {self.tail}"


def clip(text: str, head: int = PROMPT_HEAD, tail: int = PROMPT_TAIL) -> Clip:
    if len(text) <= head + tail + 40:  # cutting less than a line saves nothing
        return Clip(text)
    return Clip(text[:head], len(text) - head - tail, text[-tail:])


@dataclass(frozen=True)
class Turn:
    role: str
    content: str

    @property
    def text(self) -> Clip:
        return clip(self.content)


def conversation(sample: Sample) -> list[Turn]:
    """Every turn of a multi-turn case (the runner records them), else the one prompt."""
    return [Turn(role, content) for role, content in sample.turns]


def answers(expected: Any) -> list[str]:
    """What a case expects, for reading: answer strings once each (SQuAD repeats them), checks spelled out."""
    if expected is None:
        return []
    if isinstance(expected, str):
        return [expected]
    if isinstance(expected, list) and all(isinstance(a, str) for a in expected):
        return list(dict.fromkeys(expected))
    if isinstance(expected, dict) and isinstance(expected.get("contains"), list) and len(expected) == 1:
        return [f"contains {', '.join(str(x) for x in expected['contains'])}"]
    return [json.dumps(expected, ensure_ascii=False)]


def _target(expected: Any, output: str) -> str | None:
    """The expected answer to diff an output against: the closest one of several (SQuAD), None for checks."""
    if isinstance(expected, str):
        return expected
    if isinstance(expected, list) and expected and all(isinstance(a, str) for a in expected):
        return max(dict.fromkeys(expected), key=lambda a: difflib.SequenceMatcher(a=a, b=output).ratio())
    return None


def fail_reason(sample: Sample) -> str:
    """Why a sample failed, from what its scorer recorded (empty for a pass); for a sample that was not run, why
    it was not (it did not fail: it has no verdict)."""
    if not sample.ran:
        return f"not run: {sample.not_run_reason}"
    if sample.passed:
        return ""
    d = sample.details
    parts = [str(p) for p in d.get("problems") or []]
    if d.get("in_reasoning"):
        parts.insert(0, "never closed its reasoning block (in-reasoning)")
    if d.get("failure"):
        parts.append(str(d["failure"]))
    if d.get("missing"):
        parts.append(f"missing {', '.join(str(x) for x in d['missing'])}")
    if not parts:
        parts.append(_score_reason(sample))
    if d.get("time_capped"):
        parts.append("cut by the batch time limit")
    return "; ".join(parts)


def _score_reason(sample: Sample) -> str:
    if sample.scorer.name == "squad":
        return f"no exact match (F1 {sample.score:.2f})"
    if isinstance(sample.expected, str):
        return f"differs from the expected text (score {sample.score:.2f})"
    return f"score {sample.score:.2f}"


@dataclass
class CaseCell:
    sample: Sample
    segments: list[Segment]  # changed = not in the expected answer
    truncated: int
    flip: str  # PASS_TO_FAIL / FAIL_TO_PASS against the column's control, or ""
    reason: str
    control_reason: str = ""  # why the control failed the case (what a fail->pass fixed)

    @property
    def passed(self) -> bool:
        return bool(self.sample.passed)

    @property
    def not_run(self) -> bool:
        """No verdict: shown as not run, neither a pass nor a failure."""
        return not self.sample.ran


@dataclass
class CaseRow:
    case: str
    turns: list[Turn]
    expected: list[str]
    cells: list[CaseCell | None]
    order: int = 0  # position in the battery (rows are shown flips first)

    @property
    def flipped(self) -> bool:
        return any(c is not None and c.flip for c in self.cells)

    @property
    def failed(self) -> bool:
        return any(c is not None and c.sample.failed for c in self.cells)

    @property
    def not_run(self) -> bool:
        return any(c is not None and c.not_run for c in self.cells)

    @property
    def rank(self) -> int:
        """Regressions first, then improvements, then other failures, then the rest."""
        flips = {c.flip for c in self.cells if c is not None}
        return 0 if PASS_TO_FAIL in flips else 1 if FAIL_TO_PASS in flips else 2 if self.failed else 3


def case_cell(sample: Sample, control: Sample | None) -> CaseCell:
    text = sample.output[:MAX_OUTPUT_CHARS]
    target = None if not sample.failed or not text else _target(sample.expected, sample.output)
    segments = diff_segments(target, text) if target is not None else [Segment(text, False)] if text else []
    flip = ""
    if control is not None and control.ran and sample.ran and control.passed != sample.passed:
        flip = PASS_TO_FAIL if control.passed else FAIL_TO_PASS
    return CaseCell(sample, segments, len(sample.output) - len(text), flip, fail_reason(sample),
                    fail_reason(control) if control is not None else "")


def case_rows(battery: str, cols: list[Column]) -> list[CaseRow]:
    """One row per case, verdict flips first; within a rank the battery's own order."""
    by_col = [{s.case: s for s in c.results.samples_for(battery, c.name)} for c in cols]
    index = {id(c): i for i, c in enumerate(cols)}
    rows = []
    for order, case in enumerate(dict.fromkeys(case for samples in by_col for case in samples)):
        first = next(samples[case] for samples in by_col if case in samples)
        cells: list[CaseCell | None] = []
        for col, samples in zip(cols, by_col, strict=True):
            sample = samples.get(case)
            control = by_col[index[id(col.ref)]].get(case) if col.ref is not None else None
            cells.append(case_cell(sample, control) if sample is not None else None)
        rows.append(CaseRow(case, conversation(first), answers(first.expected), cells, order))
    return sorted(rows, key=lambda r: r.rank)
