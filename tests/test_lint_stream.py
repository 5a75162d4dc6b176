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
    from evalsuite.fixtures.tiny_model import tiny_tokenizer_dir

    from evalsuite.chat.tokenizer import load_tokenizer
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


def _cached_dataset(cache: Path, repo: str, rows: list[dict[str, object]]) -> None:
    """A dataset repository as huggingface_hub leaves it in its cache: refs/main naming a snapshot."""
    folder = cache / ("datasets--" + repo.replace("/", "--"))
    snap = folder / "snapshots" / "0123abcd"
    (snap / "data").mkdir(parents=True)
    (snap / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0123abcd", encoding="utf-8")


def test_a_cached_hub_dataset_is_streamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub id whose files are in the local hub cache is read with load_dataset(..., streaming=True), offline, row
    by row; its samples are those of the same rows in a local file."""
    datasets = pytest.importorskip("datasets")
    from evalsuite.config.datasets import DatasetSpec
    from evalsuite.config.rows import iter_samples

    rows = [tricky_row(i) for i in (0, 1, 8, 9)]
    _cached_dataset(tmp_path / "hub", "someone/tricky", rows)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    calls: list[dict[str, object]] = []
    real = datasets.load_dataset

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", spy)
    streamed = iter_samples(DatasetSpec(path="someone/tricky", type="chat_template"), streaming=True)
    assert not calls  # nothing is read before the first row is asked for
    hub = list(streamed)
    assert [c.get("streaming") for c in calls] == [True]
    local = list(iter_samples(DatasetSpec(path=str(_write_jsonl(tmp_path / "t.jsonl", rows)), type="chat_template")))
    assert [(s.row, s.messages, s.tools) for s in hub] == [(s.row, s.messages, s.tools) for s in local]
    assert {s.source for s in hub} == {"someone/tricky"}


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_dataset_not_in_the_cache_is_not_streamed_from_a_guess(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a cached snapshot the hub id goes to load_dataset as before (not streamed): offline, that is the
    usual clear error naming the dataset."""
    pytest.importorskip("datasets")
    from evalsuite.config.datasets import DatasetSpec
    from evalsuite.config.rows import iter_samples
    from evalsuite.errors import EvalsuiteError

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(EvalsuiteError, match="nobody/nothing"):
        list(iter_samples(DatasetSpec(path="nobody/nothing", type="chat_template"), streaming=True))
