"""`evalsuite report`: HTML and Markdown content, escaping of model text, deltas, gate verdicts, the CLI.

The reading of issue 16 (summary first, deltas against the control, bases and settings, plots, fail reasons,
per-case tables, budgets, training runs, print and baselines) is in test_report_reading.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_helpers import call_main
from report_support import md_tables, parse

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


def test_html_report_is_self_contained_and_escapes_model_text(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    build_report([GOOD, BAD], out, gates=parse_gates(["squad.exact_match >= 60"]))
    html = out.read_text()
    doc = parse(html)
    assert doc.tags.get("script", 0) == 0  # the model's <script> is text, not a tag
    # accuracy and 0-100 overviews, one delta plot per battery (4), the loss curves
    assert doc.tags.get("img", 0) == 7, doc.img_alts
    assert all(src.startswith("data:image/png;base64,") for src in doc.srcs)
    assert all(h.startswith("data:") for h in doc.hrefs)
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)  # no network
    assert "default-src 'none'; img-src data:; style-src 'unsafe-inline'" in html  # no script may run
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "onerror=alert(1)" not in html.replace("&lt;img src=x onerror=alert(1)&gt;", "")
    for text in ("uppercase-echo", "runaway-turns", "squad", "The ten open prompts",
                 "Explain quantum computing to a 10-year-old.", "Budgets and finish reasons", "Training runs",
                 "lora r=12, adamw_torch, seq 256, micro-batch 2", "cpu x86_64"):
        assert text in html, text
    assert len(doc.table("reading").rows) == 1 + 10
    # Gate verdicts per column, the base column gets none.
    assert re.search(r'<span class="badge FAIL">FAIL</span>\s*<div class="reason">43.33', html)
    assert '<span class="badge PASS">PASS</span>' in html


def test_every_adapter_is_compared_with_the_base_by_paired_tests() -> None:
    model = build_model([GOOD, BAD], with_plots=False)
    assert [c.label for c in model.columns] == ["base", "good", "bad"]  # bad.json's identical base: shown once
    base, good, bad = model.columns
    assert good.ref is base and bad.ref is base and base.ref is None and base.is_control
    squad = next(b for b in model.batteries if b.name == "squad")
    f1 = next(r for r in squad.metrics if r.name == "f1")
    base_cell, good_cell, bad_cell = f1.cells
    assert base_cell is not None and base_cell.delta is None  # the control itself
    assert good_cell is not None and good_cell.delta is not None and bad_cell is not None and bad_cell.delta
    assert good_cell.delta.value > bad_cell.delta.value > 0 and bad_cell.delta.direction == "better"
    assert bad_cell.delta.significant and bad_cell.delta.p < 0.05
    rate = next(r for r in next(b for b in model.batteries if b.name == "runaway-turns").metrics
                if r.name == "rate")
    assert rate.cells[2] is not None and rate.cells[2].delta is not None
    assert rate.cells[2].delta.value < 0 and rate.cells[2].delta.direction == "better"  # a lower rate is better
    # Cases where bad's verdict differs from the base's are flagged, regressions first.
    echo = next(b for b in model.batteries if b.name == "uppercase-echo")
    flips = [row.cells[2].flip for row in echo.cases if row.cells[2] is not None and row.cells[2].flip]
    assert len(flips) == 10 and set(flips) == {"fail->pass"}


def test_baseline_mode_pairs_columns_by_role() -> None:
    model = build_model([BAD, THREE], baseline_path=GOOD, with_plots=False)
    assert [c.label for c in model.columns][:2] == ["base (baseline)", "good (baseline)"]
    refs = {c.label: c.ref.label if c.ref else None for c in model.columns}
    assert refs["bad"] == "good (baseline)"
    assert refs["r4"] == "good (baseline)" and refs["r8"] == "good (baseline)"  # the baseline's only adapter


def _pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_markdown_escapes_and_tables(tmp_path: Path) -> None:
    md_path = tmp_path / "r.md"
    build_report([GOOD, BAD], None, md_path, gates=parse_gates(["squad.f1: -1.5"]), baseline=GOOD)
    md = md_path.read_text()
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "\\| a \\| b \\|" in md  # pipes in outputs cannot split cells
    tables = md_tables(md)
    assert len(tables) >= 8
    for header, rows in tables:  # every row of a table has as many unescaped pipes as its header row
        assert all(_pipes(row) == _pipes(header) for row in rows), header
    assert "**FAIL** 76.96 vs baseline 99.28" in md
    assert "16 flipped cases" in md and "- pass→fail squad[q002]: Read the following" in md
    assert "### The ten open prompts" in md and "### Training runs" in md
    assert "_regression gates need --baseline" not in md


def test_markdown_without_plots_and_single_file() -> None:
    model = build_model([GOOD], with_plots=False)
    md = render_markdown(model)
    assert "its control (the base-model column)" in md
    assert "| base | control | good | base | tiny-qwen |" in md


def test_md_escape() -> None:
    assert md_escape("a|b\nc <x> *y* _z_ `q` [l](u) #h") == (
        "a\\|b<br>c &lt;x&gt; \\*y\\* \\_z\\_ \\`q\\` \\[l\\](u) \\#h")
    assert md_escape(None) == ""


def test_diff_segments_mark_only_changes() -> None:
    segs = diff_segments("HELLO WORLD", "HELLO WORLd\nassistant")
    assert "".join(s.text for s in segs) == "HELLO WORLd\nassistant"
    assert [s.text for s in segs if s.changed] == ["WORLd\nassistant"]
    assert diff_segments("same", "same") == [type(segs[0])("same", False)]
    # the space between two changed words is part of one mark
    assert [s.text for s in diff_segments("answer 0", "something else") if s.changed] == ["something else"]
    assert [s.text for s in diff_segments("a b c", "x b y") if s.changed] == ["x", "y"]


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
