"""The lint reads its rows as a stream (issue 19): it must report exactly what the in-memory lint reported, and hold
no more than a chunk of rows at a time.

``lint_data/stream_golden.json`` is what the lint said on each case of ``lint_stream_cases.py`` when it held every
row in memory. Here the same cases are linted in chunks of 7 rows, with JSON arrays read 61 characters at a time, so
that shapes, a rule's first rows and the rows shown cross chunk and read-buffer boundaries.
"""

from __future__ import annotations

import gc
import json
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from lint_stream_cases import CASES, GOLDEN, digest, lint_case, tricky_row

GOLD = json.loads(GOLDEN.read_text(encoding="utf-8"))


def test_every_case_has_a_golden() -> None:
    assert sorted(GOLD) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_streamed_lint_reports_what_the_in_memory_lint_reported(name: str, shared_fixtures: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from evalsuite.config import records

    monkeypatch.setattr(records, "BLOCK", 61)
    report, built = lint_case(name, shared_fixtures, tmp_path, chunk=7)
    assert digest(report, built, shared_fixtures, tmp_path) == GOLD[name]


class Counted:
    """Samples made on demand, counting how many are alive at once (each pass re-reads them, as a file would be)."""

    def __init__(self, samples_of: list[dict[str, object]]) -> None:
        self.records = samples_of
        self.made = self.freed = self.most = 0
        self.passes = 0

    def _free(self) -> None:
        self.freed += 1

    def __iter__(self) -> Iterator[object]:
        from evalsuite.config.datasets import DatasetSpec
        from evalsuite.config.rows import to_sample

        spec = DatasetSpec(path="rows.jsonl", type="chat_template")
        self.passes += 1
        for i, rec in enumerate(self.records, start=1):
            sample = to_sample(rec, spec, "rows.jsonl", i)
            self.made += 1
            weakref.finalize(sample, self._free)
            if i % 50 == 0:
                gc.collect()
                self.most = max(self.most, self.made - self.freed)
            yield sample


def test_the_lint_holds_a_chunk_of_rows_not_the_dataset() -> None:
    """3,000 rows linted in chunks of 40: at any time only the chunk being checked and the few rows findings show
    are alive, whatever the row count."""
    from evalsuite.chat.tokenizer import load_tokenizer
    from evalsuite.fixtures.tiny_model import tiny_tokenizer_dir
    from evalsuite.lint.runner import run_lint
    from evalsuite.lint.setup import LintSetup

    tk = load_tokenizer(tiny_tokenizer_dir())
    rows = Counted([tricky_row(i) for i in range(3000)])
    setup = LintSetup(tk=tk, template=tk.chat_template, samples=rows, source="rows")  # type: ignore[arg-type]
    report = run_lint(setup, chunk=40)
    assert report.stats["rows"] == 3000
    assert {f.rule for f in report.findings} >= {"special-text-in-content", "double-eos"}
    kept = len(report.kept)
    assert kept <= 3 * (len(report.findings) + 1) + 1
    assert rows.most <= 2 * 40 + kept + 10, rows.most  # a chunk (and the next one being read), not 3,000
