"""Issue 16: the report answers "is it better, on what, and is it significant" at a glance, in HTML and Markdown.

The reading the issue describes (tests/data/results/factory.py ``scenario``): ``demo`` is a base + adapter file with
the built-in batteries' token caps; ``short`` is an adapter on the same base probed with 16-token caps and no base
column of its own; ``big`` is a base + adapter on another base model. A ``--baseline`` report and a few in-memory
variants cover the rest. Every test reads the rendered HTML (structure and text) or Markdown, never pixels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from report_support import Document, load_factory, md_cells, md_tables, parse

from evalsuite.gates.baseline import record_baseline
from evalsuite.report import build_report
from evalsuite.report.build import build_model
from evalsuite.report.cases import answers, clip, fail_reason
from evalsuite.report.model import ReportModel
from evalsuite.report.plots import bars_figure, delta_figure, loss_figure
from evalsuite.report.render import render_html, render_markdown
from evalsuite.results.aggregate import compute_metrics, sample_values
from evalsuite.results.io import load_results, write_results
from evalsuite.results.schema import Sample, ScorerRef
from evalsuite.results.stats import bootstrap_p_floor, fmt_p, paired_bootstrap_ci

factory = load_factory()


@dataclass
class Report:
    files: dict[str, Path]
    model: ReportModel
    html: str
    doc: Document
    md: str


def _report(paths: list[Path], out: Path, baseline: Path | None = None) -> Report:
    html, md = out / "r.html", out / "r.md"
    model = build_report(paths, html, md, baseline=baseline)
    text = html.read_text()
    return Report({}, model, text, parse(text), md.read_text())


@pytest.fixture(scope="module")
def reading(tmp_path_factory: pytest.TempPathFactory) -> Report:
    folder = tmp_path_factory.mktemp("reading")
    files = factory.scenario(folder)
    rep = _report([files["demo"], files["short"], files["big"]], folder)
    rep.files = files
    return rep


@pytest.fixture(scope="module")
def with_baseline(tmp_path_factory: pytest.TempPathFactory, reading: Report) -> Report:
    folder = tmp_path_factory.mktemp("baseline")
    record_baseline(reading.files["demo"], folder / "baseline.json", cwd=folder)
    return _report([reading.files["demo"]], folder, baseline=folder / "baseline.json")


def _metric_table(doc: Document, battery: str) -> list[list[str]]:
    table = next(t for t in doc.tables if "metrics" in t.classes and t.section == f"battery-{battery}")
    return [r.texts for r in table.rows]


def _md_table(md: str, header_start: str) -> tuple[str, list[str]]:
    return next((h, rows) for h, rows in md_tables(md) if h.startswith(header_start))


def _md_section(md: str, heading: str) -> str:
    return md.split(heading, 1)[1].split("\n#### ", 1)[0].split("\n### ", 1)[0]


# 1. Deltas run from the control (the base) to the candidate, with the right sign and colour.


def test_the_base_is_the_control_and_the_candidate_carries_the_delta(reading: Report) -> None:
    rows = _metric_table(reading.doc, "uppercase-echo")
    heads = rows[1]
    assert heads[:3] == ["metric", "base control", "demo"]  # the reference column is marked
    accuracy = next(r for r in rows if r[0] == "accuracy")
    assert "Δ" not in accuracy[1]  # the control shows its score only
    assert accuracy[2].startswith("0.950") and "Δ +0.900" in accuracy[2]
    assert '<span class="d better">Δ +0.900</span>' in reading.html
    # runaway-turns.rate falls: a negative delta, and better (lower is better), in the better colour
    assert '<span class="d better">Δ -0.900</span>' in reading.html
    assert '<span class="d worse">' not in reading.html.split('id="battery-runaway-turns"')[1].split("</table>")[0]
    md_head, md_rows = _md_table(_md_section(reading.md, "#### uppercase-echo"), "| metric |")
    assert md_cells(md_head)[:3] == ["metric", "base (control)", "demo"]
    acc = md_cells(next(r for r in md_rows if r.startswith("| accuracy")))
    assert "Δ" not in acc[1] and "Δ **▲ better +0.900**" in acc[2]
    rate = md_cells(next(r for r in _md_table(_md_section(reading.md, "#### runaway-turns"), "| metric |")[1]
                         if r.startswith("| rate")))
    assert "**▲ better -0.900**" in rate[2]


def test_a_worse_candidate_reads_worse(tmp_path: Path) -> None:
    """A regression (the adapter below its base) is a negative delta marked worse, in both variants."""
    path = tmp_path / "worse.json"
    write_results(factory.make_results([("base", "base", 0.95), ("broken", "adapter", 0.1)], 0), path)
    rep = _report([path], tmp_path)
    assert '<span class="d worse">Δ -0.' in rep.html and '<span class="verdict worse">worse</span>' in rep.html
    assert "**▼ worse -0." in rep.md and "| **▼ worse** |" not in rep.md  # counts follow the verdict
    assert re.search(r"\| \*\*▼ worse\*\* \(\d+ fail→pass, \d+ pass→fail\)", rep.md)


# 2. One summary table first: battery x metric, control, candidate, delta with its 95% CI, p, verdict, by |delta|.


def test_the_summary_comes_first_sorted_by_the_size_of_the_change(reading: Report) -> None:
    assert reading.doc.tables[0].classes == ["summary"]
    assert reading.html.index('id="summary"') < reading.html.index('id="scores"') < reading.html.index(
        'id="columns"')
    rows = reading.doc.table("summary").rows
    assert rows[0].texts == ["battery", "metric", "control", "candidate", "Δ, 95% CI", "p", "verdict", "n"]
    sizes = [abs(r.delta.value) / r.delta.scale for r in reading.model.summary]
    assert sizes == sorted(sizes, reverse=True) and len(rows) - 1 == len(sizes)
    top = rows[1].texts
    assert top[0] == "squad" and top[1] == "exact_match" and top[2] == "3.3 base" and top[3] == "93.3 demo"
    assert top[4] == "+90.0\n+76.7 to +100.0" and top[5] == "p=1.5e-08" and top[6].startswith("better")
    assert "27 fail→pass · 0 pass→fail" in top[6] and top[7] == "30"
    # squad.accuracy says what squad.exact_match says: one row, not two
    assert not any(r.texts[0] == "squad" and r.texts[1] == "accuracy" for r in rows)
    _, body = _md_table(reading.md, "| battery | metric | control |")
    assert reading.md.index("### Summary") < reading.md.index("### Batteries") < reading.md.index("### Columns")
    assert md_cells(body[0]) == ["squad", "exact\\_match", "3.3 (base)", "93.3 (demo)",
                                 "**+90.0** [+76.7 to +100.0]", "p=1.5e-08",
                                 "**▲ better** (27 fail→pass, 0 pass→fail)", "30"]
    assert len(body) == len(sizes)


def test_summary_ci_is_the_paired_bootstrap_of_the_per_case_differences(reading: Report) -> None:
    row = next(r for r in reading.model.summary if (r.battery, r.metric, r.candidate.label) == ("squad", "f1", "demo"))
    results = load_results(reading.files["demo"])
    base = {s.case: s for s in results.samples_for("squad", "base")}
    cand = results.samples_for("squad", "demo")
    a = [100 * v for v in sample_values([base[s.case] for s in cand], "score")]
    b = [100 * v for v in sample_values(cand, "score")]
    low, high = paired_bootstrap_ci(a, b)
    assert (row.delta.low, row.delta.high) == (low, high)
    assert row.delta.low < row.delta.value < row.delta.high and row.delta.n == 30
    assert f"{low:+.1f} to {high:+.1f}" in reading.doc.table("summary").rows[
        reading.model.summary.index(row) + 1].texts[4]


def test_no_deltas_is_said_not_left_blank(tmp_path: Path) -> None:
    path = tmp_path / "alone.json"
    write_results(factory.make_results([("solo", "adapter", 0.8)], 0), path)
    rep = _report([path], tmp_path)
    assert "No deltas: no column has a control on its base model." in rep.html
    assert "_No deltas: no column has a control on its base model._" in rep.md
    assert "no base-model column on tiny-qwen: solo has nothing to be compared with" in rep.html


# 3. Columns are grouped by base; deltas only within a base; a banner when settings differ.


def test_columns_are_grouped_by_base_and_deltas_stay_within_one(reading: Report) -> None:
    labels = [c.label for c in reading.model.columns]
    assert labels == ["base", "demo", "demo-16", "big-base", "big-lora"]
    refs = {c.label: c.ref.label if c.ref else None for c in reading.model.columns}
    assert refs == {"base": None, "demo": "base", "demo-16": "base", "big-base": None, "big-lora": "big-base"}
    assert all(r.control.base_model == r.candidate.base_model for r in reading.model.summary)
    groups = _metric_table(reading.doc, "squad")[0]
    assert groups == ["", "base tiny-qwen", "base big-1b"]
    assert '<th colspan="3" class="group">base tiny-qwen</th><th colspan="2" class="group">base big-1b</th>' \
        in reading.html
    banner = reading.doc.texts["banner"]
    assert any("on 2 base models" in b and "columns on different bases are not compared" in b for b in banner)
    assert "> ⚠ The columns are on 2 base models" in reading.md


def test_different_settings_raise_a_banner_and_mark_the_rows(reading: Report) -> None:
    banner = next(b for b in reading.doc.texts["banner"] if "demo-16 ran" in b)
    assert "ran with other settings than its control base" in banner
    assert "squad max_new_tokens 16 vs 32" in banner and "llama32-ten max_new_tokens 16 vs 512" in banner
    squad_16 = next(r for r in reading.doc.table("summary").rows[1:]
                    if r.texts[0] == "squad" and "demo-16" in r.texts[3] and r.texts[1] == "exact_match")
    assert "⚠ max_new_tokens 16 vs 32" in squad_16.texts[6]
    assert "> ⚠ demo-16 ran with other settings than its control base" in reading.md
    assert "⚠ max\\_new\\_tokens 16 vs 32 |" in reading.md
    assert not any("big-lora ran with other settings" in b for b in reading.doc.texts["banner"])


def test_an_engine_setting_difference_is_named(tmp_path: Path) -> None:
    base_file, other = tmp_path / "a.json", tmp_path / "b.json"
    write_results(factory.make_results([("base", "base", 0.1)], 0), base_file)
    res = factory.make_results([("lora", "adapter", 0.9)], 0)
    res.engine = replace(res.engine, seed=7, settings={**res.engine.settings, "do_sample": True})
    write_results(res, other)
    banners = build_model([base_file, other], with_plots=False).banners
    assert banners == ["lora ran with other settings than its control base: seed 7 vs 0; do_sample True vs False. "
                       "Its deltas mix the adapter's effect with these."]


# 4. Plots that say something: empty ones dropped, gaps for missing values, labelled values, a delta plot.


def test_a_delta_plot_per_battery_and_no_empty_plots(reading: Report, tmp_path: Path) -> None:
    alts = reading.doc.img_alts
    for battery in ("uppercase-echo", "runaway-turns", "squad", "llama32-ten"):
        assert f"{battery}: deltas against the control with 95% CIs" in alts
    zero = factory.make_results([("base", "base", 0.0), ("lora", "adapter", 0.0)], 0)
    for s in zero.samples:  # SQuAD all wrong, F1 0 too: the 0-100 plot would be an empty axis
        if s.battery == "squad":
            s.passed, s.score = False, 0.0
    zero.metrics = compute_metrics(zero.samples)
    write_results(zero, tmp_path / "zero.json")
    rep = _report([tmp_path / "zero.json"], tmp_path)
    assert "scores on a 0-100 scale" not in rep.doc.img_alts and "accuracy per battery" in rep.doc.img_alts


def test_bars_leave_gaps_label_values_and_keep_the_full_scale() -> None:
    fig = bars_figure("t", ["echo", "squad"], ["base", "lora"], [[0.0, None], [0.9, 0.5]],
                      [[(0.0, 0.1), None], [(0.8, 0.95), (0.4, 0.6)]], "pass rate", 1.0)
    ax = fig.axes[0]
    assert len(ax.patches) == 3  # the missing value draws no bar at 0
    texts = [t.get_text() for t in ax.texts]
    assert sorted(texts) == ["0.00", "0.50", "0.90", "n/a"]  # a bar at 0 still says 0
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 1.0


def test_delta_plot_marks_zero_and_the_verdicts() -> None:
    fig = delta_figure("squad", [("f1", 50.2, 41.6, 58.7, "better"), ("em", -3.0, -8.0, 2.0, "not significant")])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["f1", "em"]
    assert [t.get_text() for t in ax.texts] == ["+50.2 [+41.6, +58.7]", "-3.0 [-8.0, +2.0]"]
    assert any(list(line.get_xdata()) == [0, 0] for line in ax.lines)  # the zero line
    markers = [line.get_marker() for line in ax.lines if len(line.get_xdata()) == 1]
    assert markers == ["^", "o"]  # better and not significant differ in shape, not only colour


# 5. Fail badges say why.


def test_fail_reasons_are_shown_under_the_badges(reading: Report) -> None:
    why = reading.doc.texts["why"]
    assert "did not stop within the token/time budget; loop: ' quantum computin' repeated 9 times" in why
    assert "missing expected answer(s): Paris" in why
    assert any(w.startswith("no exact match (F1 ") for w in why)
    assert '<span class="badge fail">fail</span>' in reading.html
    ten = _md_table(reading.md, "| prompt |")[1]
    assert any("❌ _did not stop within the token/time budget; loop: ' quantum computin' repeated 9 times_" in r
               for r in ten)
    assert any("❌ _missing expected answer(s): Paris_" in r for r in ten)


def test_fail_reason_reads_what_each_scorer_records() -> None:
    def sample(passed: bool, details: dict[str, Any], scorer: str = "x", expected: Any = None) -> Sample:
        return Sample("b", "c", "a", "p", "out", "eos", 1, 0.1, ScorerRef(scorer), passed, 0.25, expected, details)

    assert fail_reason(sample(False, {"failure": "unchanged"})) == "unchanged"  # cyrillic_case
    assert fail_reason(sample(False, {"missing": ["Paris", "13"]})) == "missing Paris, 13"  # contains
    assert fail_reason(sample(False, {"problems": ["a", "b"], "time_capped": True})) == \
        "a; b; cut by the batch time limit"
    assert fail_reason(sample(False, {}, "squad")) == "no exact match (F1 0.25)"
    assert fail_reason(sample(False, {}, "exact_match", "HI")) == "differs from the expected text (score 0.25)"
    assert fail_reason(sample(True, {"problems": ["ignored"]})) == ""


# 6. Per-case tables: flips first, diffs against the expected answer, filters that work without a script.


def test_case_rows_list_flips_first_with_a_css_only_filter(reading: Report) -> None:
    table = next(t for t in reading.doc.tables if t.section == "cases-runaway-turns")
    rows = [r for r in table.rows if "case" in r.classes]
    flipped = ["has-flip" in r.classes for r in rows]
    assert flipped == sorted(flipped, reverse=True) and any(flipped) and not all(flipped)
    regressions = [i for i, r in enumerate(rows) if "pass→fail" in " ".join(r.texts)]
    improvements = [i for i, r in enumerate(rows) if "fail→pass" in " ".join(r.texts)
                    and "pass→fail" not in " ".join(r.texts)]
    assert regressions and max(regressions) < min(improvements)  # regressions before improvements
    view = next(b for b in reading.model.batteries if b.name == "runaway-turns")
    assert f"{len(rows)} cases · {view.n_flips} verdict flips against the control · {view.n_failed} with a " \
           "failure" in reading.html
    assert view.n_flips == sum(flipped)
    # the filter: radio buttons + CSS, flips preselected; no <script> anywhere
    assert re.search(r'<input type="radio" name="f2" id="f2-flip" class="f-flip" checked>'
                     rf'<label for="f2-flip">flips {view.n_flips}</label>', reading.html)
    assert ".f-flip:checked ~ .scroll tr.case:not(.has-flip) { display: none; }" in reading.html
    assert "<script" not in reading.html.replace("&lt;script", "")


def test_failing_outputs_are_diffed_against_the_expected_answer(reading: Report) -> None:
    echo = next(b for b in reading.model.batteries if b.name == "uppercase-echo")
    row = next(r for r in echo.cases if r.cells[0] is not None and not r.cells[0].passed)
    cell = row.cells[0]
    assert cell is not None and row.expected == [cell.sample.expected]
    marked = [s.text for s in cell.segments if s.changed]
    assert marked and all(m not in str(cell.sample.expected) for m in marked)  # only what the answer lacks
    assert f"<mark>{marked[0]}</mark>" in reading.html
    passed = next(c for r in echo.cases for c in r.cells if c is not None and c.passed)
    assert not any(s.changed for s in passed.segments)  # a pass has nothing to mark


def test_markdown_lists_the_flips_regressions_first(reading: Report) -> None:
    section = _md_section(reading.md, "#### runaway-turns")
    assert re.search(r"<details><summary>runaway-turns: \d+ verdict flips against the control", section)
    _, body = _md_table(section, "| case | column | flip |")
    flips = [md_cells(r)[2] for r in body]
    assert flips[0] == "pass→fail" and flips == sorted(flips, key=lambda f: f != "pass→fail")
    assert "did not stop" in md_cells(body[0])[6] or "started another role turn" in md_cells(body[0])[6]
    gained = md_cells(next(r for r in body if "| fail→pass |" in r))
    assert gained[6].startswith("control: ")  # what the flip fixed: why the control failed


# 7. SQuAD and multi-turn cases are readable.


def test_long_prompts_keep_their_question_and_answers_are_deduplicated(reading: Report) -> None:
    table = next(t for t in reading.doc.tables if t.section == "cases-squad")
    row = next(r for r in table.rows if r.texts[0] == "q000")
    prompt, expected = row.texts[1], row.texts[2]
    assert prompt.startswith("Read the following context and concisely answer my question.")
    assert prompt.endswith("Question 0: what did the farmers trade?")
    assert re.search(r"… [\d,]+ characters cut …", prompt) and len(prompt) < 500
    assert expected == "answer 0the answer 0"  # two <div class="ans">, the repeated answer once
    assert answers(["Denver", "Denver", "the Denver"]) == ["Denver", "the Denver"]
    assert answers({"contains": ["13", "21"]}) == ["contains 13, 21"]
    assert clip("x" * 100).cut == 0 and clip("a" * 300 + "b" * 300).tail.endswith("b" * 10)
    md_rows = _md_table(_md_section(reading.md, "#### squad"), "| case | column | flip |")[1]
    cells = md_cells(md_rows[0])
    assert "characters cut\\]" in cells[3] and cells[3].endswith("what did the farmers trade?")
    assert cells[4] == f"answer {cells[0][1:].lstrip('0') or '0'} · the answer {cells[0][1:].lstrip('0') or '0'}"


def test_multi_turn_cases_show_the_whole_conversation(reading: Report) -> None:
    table = next(t for t in reading.doc.tables if t.section == "cases-runaway-turns")
    row = next(r for r in table.rows if r.texts[0] == "stop-01")
    assert row.texts[1] == "user hi thereassistant HI THEREuser say hello 1"  # three turns, each with its role
    assert row.cells[1].html_classes.count("role") == 3
    md = _md_section(reading.md, "#### runaway-turns")
    assert "| stop-01 | demo-16 | pass→fail | user: hi there<br>assistant: HI THERE<br>user: say hello 1 |" in md


# 8. Budgets and finish reasons per battery, with the battery's cap.


def test_finish_reasons_per_battery_beside_its_cap(reading: Report) -> None:
    rows = reading.doc.table("budgets").rows
    assert rows[0].texts == ["battery", "column", "cap", "eos", "stop-string", "max-tokens", "new-turn",
                             "not-run", "mean tokens"]
    squad_base = next(r for r in rows if r.texts[:3] == ["squad", "base", "32"])
    assert squad_base.texts[5] == "29 (97%)" and "warn" in squad_base.cells[5].classes
    short = next(r for r in rows[1:] if r.texts[0] == "demo-16" and r.cells[0].tag == "td")
    assert short.texts[1] == "16"  # rows after the first of a battery have no battery cell (rowspan)
    assert "max_new_tokens 32 / 16 · ran into the cap:" in reading.html
    assert "caps 32–512 (per battery)" in reading.html and "max 512 tokens" not in reading.html
    assert "| squad | base | 32 | 1 (3%) | 0 (0%) | **29 (97%)** | 0 (0%) | 0 (0%) | 3.0 |" in reading.md
    assert "_max\\_new\\_tokens 32 / 16; ran into the cap: base 97%" in reading.md


# 9. Training runs: the manifest's final loss, one loss panel per base, the base shown.


def test_training_runs_show_the_manifest_final_loss_and_the_base(reading: Report) -> None:
    rows = reading.doc.table("runs").rows
    assert rows[0].texts[:2] == ["column", "base model"] and rows[0].texts[-2:] == ["final loss", "last logged loss"]
    demo = load_results(reading.files["demo"]).adapter("demo").manifest
    assert demo is not None
    final, last = demo["train"]["final_loss"], demo["train"]["loss_curve"][-1]
    assert final != last["loss"]
    row = next(r for r in rows if r.texts[0] == "demo")
    assert row.texts[1] == "tiny-qwen" and row.texts[-2] == f"{final:.4f}"
    step = rows[0].texts.index("s/step")  # the median step the backend timed, from the manifest
    assert row.texts[step] == f"{demo['train']['step_time_s']:.3f}" and row.texts[step] != "–"
    assert row.texts[-1] == f"{last['loss']:.4f} @ {last['step']}"
    assert next(r for r in rows if r.texts[0] == "big-lora").texts[1] == "big-1b"
    assert "| demo | tiny-qwen | lora r=" in reading.md and f"| {final:,.4f} | {last['loss']:,.4f} @ 27 |" in reading.md
    fig = loss_figure([(r["label"], r["base_model"], r["curve"]) for r in reading.model.runs])
    assert [ax.get_title() for ax in fig.axes] == ["base tiny-qwen", "base big-1b"]
    assert [len(ax.lines) for ax in fig.axes] == [2, 1]


# 10. Print and narrow screens; baselines; p at the bootstrap floor.


def test_print_and_narrow_screen_styles(reading: Report) -> None:
    css = reading.html.split("<style>", 1)[1].split("</style>", 1)[0]
    narrow = css.split("@media (max-width: 900px)", 1)[1].split("@media print", 1)[0]
    printed = css.split("@media print", 1)[1]
    assert "white-space: normal" in narrow
    assert "@page { size: A4 landscape" in printed
    assert ".scroll { overflow: visible; width: auto; max-width: none" in printed  # nothing clipped on paper
    assert "th.rowhead { position: static" in printed and "display: none" in printed  # no sticky, no filter bar


def test_baseline_labels_record_and_merged_base(with_baseline: Report) -> None:
    labels = [c.label for c in with_baseline.model.columns]
    assert labels == ["base (baseline)", "demo (baseline)", "demo"]
    assert "baseline:" not in with_baseline.html.split("<body>")[1].split("Baseline")[0]
    record = with_baseline.model.baseline
    assert record is not None and record.source is not None and record.source_sha256 is not None
    line = with_baseline.doc.texts["baseline"][0]
    assert line.startswith("Baseline baseline.json, recorded ") and f"(sha256 {record.source_sha256[:12]}…)" in line
    assert "demo:base has the same outputs as base (baseline) and is shown once" in with_baseline.html
    assert f"**Baseline** baseline.json, recorded {record.recorded}" in with_baseline.md
    assert "_Note: demo:base has the same outputs as base (baseline) and is shown once" in with_baseline.md
    refs = {c.label: c.ref.label if c.ref else None for c in with_baseline.model.columns}
    assert refs["demo"] == "demo (baseline)"
    roles = [r.texts[1] for r in with_baseline.doc.table("columns").rows[1:]]
    assert roles == ["baseline", "baseline + control", "candidate"]


def test_p_at_the_bootstrap_floor_is_a_bound(reading: Report) -> None:
    floor = bootstrap_p_floor()
    assert fmt_p(floor, "paired bootstrap") == "p<0.0005"
    assert fmt_p(0.0123, "paired bootstrap") == "p=0.0123"
    assert fmt_p(floor, "exact McNemar, 0 pass->fail / 11 fail->pass") == "p=0.0005"  # an exact p is exact
    f1 = next(r for r in reading.model.summary if (r.battery, r.metric, r.candidate.label) == ("squad", "f1", "demo"))
    assert f1.delta.p == floor and f1.delta.p_text == "p<0.0005"
    assert "p&lt;0.0005" in reading.html and "p=0.0005" not in reading.html and "p=0.000499" not in reading.html
    assert "| p&lt;0.0005 |" in reading.md and "p=0.0005" not in reading.md


def test_markdown_and_html_render_from_one_model(reading: Report) -> None:
    """Both variants come from the same model: re-rendering gives the same summary (minus the clock)."""
    again = render_markdown(reading.model)
    strip = re.compile(r"generated \S+")
    assert strip.sub("", again) == strip.sub("", reading.md)
    assert "Summary" in render_html(reading.model)
