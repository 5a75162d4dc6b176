"""`evalsuite report`: HTML and Markdown content, escaping of model text, deltas, gate verdicts."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from cli_helpers import call_main

from evalsuite.gates.expr import parse_gates
from evalsuite.report import build_report
from evalsuite.report.build import build_model
from evalsuite.report.render import md_escape, render_markdown
from evalsuite.report.textdiff import diff_segments
from evalsuite.results.io import load_results

DATA = Path(__file__).parent / "data" / "results"
GOOD, BAD, RERUN, THREE = (DATA / n for n in ("good.json", "bad.json", "good_rerun.json", "three.json"))


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # no pyproject with gates in sight


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.srcs: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        d = dict(attrs)
        if d.get("src"):
            self.srcs.append(d["src"] or "")
        if tag == "link" and d.get("href"):
            self.hrefs.append(d["href"] or "")


def _parse(html: str) -> _Collector:
    c = _Collector()
    c.feed(html)
    return c


def test_html_report_is_self_contained_and_escapes_model_text(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    build_report([GOOD, BAD], out, gates=parse_gates(["squad.exact_match >= 60"]))
    html = out.read_text()
    parsed = _parse(html)
    assert parsed.tags.get("script", 0) == 0  # the model's <script> is text, not a tag
    assert parsed.tags.get("img", 0) == 4  # accuracy, 0-100 scores, finish reasons, loss curves
    assert all(src.startswith("data:image/png;base64,") for src in parsed.srcs)
    assert all(h.startswith("data:") for h in parsed.hrefs)
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)  # no network
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "onerror=alert(1)" not in html.replace("&lt;img src=x onerror=alert(1)&gt;", "")
    # Columns, per-battery sections, the ten prompts, finish reasons, runs table.
    for text in ("uppercase-echo", "runaway-turns", "squad", "The ten open prompts",
                 "Explain quantum computing to a 10-year-old.", "Finish reasons", "Training runs",
                 "lora r=12, adamw_torch, seq 256, micro-batch 2", "cpu x86_64"):
        assert text in html, text
    assert html.count('<th class="rowhead">ten-') == 10
    # Gate verdicts per column, the base column gets none.
    assert re.search(r'<span class="badge FAIL">FAIL</span>\s*<div class="reason">43.33', html)
    assert '<span class="badge PASS">PASS</span>' in html


def test_deltas_use_paired_tests_against_the_reference() -> None:
    model = build_model([GOOD, BAD], with_plots=False)
    labels = [c.label for c in model.columns]
    assert labels == ["base", "good", "bad"]  # the identical base of bad.json is shown once
    assert model.reference == "column good"
    squad = next(b for b in model.batteries if b.name == "squad")
    f1 = next(r for r in squad.metrics if r.name == "f1")
    _, good_cell, bad_cell = f1.cells
    assert good_cell is not None and good_cell.delta == ""  # the reference itself
    assert bad_cell is not None and bad_cell.delta.startswith("-") and bad_cell.direction == "worse"
    assert bad_cell.significant and bad_cell.p_value is not None and bad_cell.p_value < 0.05
    rate = next(r for r in next(b for b in model.batteries if b.name == "runaway-turns").metrics
                if r.name == "rate")
    assert rate.cells[2] is not None and rate.cells[2].direction == "worse"  # higher rate is worse
    assert rate.cells[2].delta.startswith("+")
    # Cases where bad's verdict differs from good's are flagged for highlighting.
    echo = next(b for b in model.batteries if b.name == "uppercase-echo")
    changed = [row.case for row in echo.cases if row.cells[2] is not None and row.cells[2].changed]
    assert len(changed) == 5


def test_baseline_mode_pairs_columns_by_role() -> None:
    model = build_model([BAD, THREE], baseline_path=GOOD, with_plots=False)
    assert [c.label for c in model.columns][:2] == ["base (baseline)", "good (baseline)"]
    refs = {c.label: c.ref.label if c.ref else None for c in model.columns}
    assert refs["bad"] == "good (baseline)"
    assert refs["r4"] == "good (baseline)"  # ambiguous role: falls back to the first baseline column


def _pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_markdown_escapes_and_tables(tmp_path: Path) -> None:
    md_path = tmp_path / "r.md"
    build_report([GOOD, BAD], None, md_path, gates=parse_gates(["squad.f1: -1.5"]), baseline=GOOD)
    md = md_path.read_text()
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "\\| a \\| b \\|" in md  # pipes in outputs cannot split cells
    # Every row of a table has as many unescaped pipes as its header row.
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            width = _pipes(line)
            j = i + 1
            while j < len(lines) and lines[j].startswith("| "):
                assert _pipes(lines[j]) == width, lines[j]
                j += 1
            assert _pipes(lines[i - 1]) == width
    assert "**FAIL** 76.96 vs baseline 99.28" in md
    assert "16 flipped cases" in md and "- pass-&gt;fail squad[q002]: Context" in md
    assert "### The ten open prompts" in md and "### Training runs" in md
    assert "_regression gates need --baseline" not in md


def test_markdown_without_plots_and_single_file() -> None:
    model = build_model([GOOD], with_plots=False)
    md = render_markdown(model)
    assert "Deltas against column good" in md
    assert "| base | good | base | tiny-qwen |" in md


def test_md_escape() -> None:
    assert md_escape("a|b\nc <x> *y* _z_ `q` [l](u) #h") == (
        "a\\|b<br>c &lt;x&gt; \\*y\\* \\_z\\_ \\`q\\` \\[l\\](u) \\#h")
    assert md_escape(None) == ""


def test_diff_segments_mark_only_changes() -> None:
    segs = diff_segments("HELLO WORLD", "HELLO WORLd\nassistant")
    assert "".join(s.text for s in segs) == "HELLO WORLd\nassistant"
    assert [s.text for s in segs if s.changed] == ["WORLd\nassistant"]
    assert diff_segments("same", "same") == [type(segs[0])("same", False)]


def test_report_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html, md = tmp_path / "o" / "r.html", tmp_path / "o" / "r.md"
    code = call_main(["report", str(GOOD), str(BAD), str(THREE), "-o", str(html), "--markdown", str(md),
                 "--gate", "runaway-turns.rate <= 0.1"])
    out, _ = capsys.readouterr()
    assert code == 0 and f"wrote {html}" in out and html.is_file() and md.is_file()
    text = html.read_text()
    assert "runaway-turns.rate &lt;= 0.1" in text and "cuda Synthetic GPU" in text
    r8 = load_results(THREE).adapter("r8").manifest
    assert r8 is not None
    assert f'<td class="num">{r8["train"]["peak_cuda_mb"]:,.0f}</td>' in text  # memory/time table
    # Bad input: exit 2, nothing written, inputs never overwritten.
    before = GOOD.read_bytes()
    code = call_main(["report", str(GOOD), "-o", str(GOOD)])
    _, err = capsys.readouterr()
    assert code == 2 and "refusing to overwrite" in err and GOOD.read_bytes() == before
    code = call_main(["report", str(GOOD), "-o", str(tmp_path / "x.html"), "--gate", "squad.f9 >= 1"])
    _, err = capsys.readouterr()
    assert code == 2 and 'has no metric "f9"' in err and not (tmp_path / "x.html").exists()
    code = call_main(["report", str(tmp_path / "missing.json"), "-o", str(tmp_path / "y.html")])
    _, err = capsys.readouterr()
    assert code == 2 and "no such results file" in err
