"""The report's judge part: win/tie/loss per battery with its interval, and each verdict next to the answers, in
HTML and Markdown; judge text is untrusted like model text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from report_support import load_factory, md_cells, md_tables, parse

from evalsuite.judge.pairs import asks_for, judgement, merge, pair_cases
from evalsuite.report import build_report
from evalsuite.report.model import BATTERY_PARTS, TEN_PARTS
from evalsuite.results.io import write_results
from evalsuite.results.stats import wilson_interval

factory = load_factory()
EVIL = "<script>alert(1)</script> | I refuse to pick."


def _judged(tmp_path: Path) -> tuple[Path, Any]:
    """The judge prefers lora in both orders, except on one case per battery, where it answers garbage."""
    results = factory.make_results([("base", "base", 0.2), ("lora", "adapter", 0.9)], 0)
    fresh = []
    for cases in pair_cases(results, "lora", "base").values():
        asked = asks_for(cases, "Prefer correct answers.")
        replies = {(a.case, a.order): ("Verdict: A" if a.order == "ab" else "Verdict: B") for a in asked}
        first = next((a.case for a in asked), None)
        if first is not None:  # one case per battery: the judge answers garbage with markup in it
            replies[(first, "ab")] = EVIL
        fresh.append(judgement(cases, replies, "judge-x", "lora", "base", "Prefer correct answers."))
    merge(results, fresh)
    path = tmp_path / "judged.json"
    write_results(results, path)
    return path, results


def _winners(results: Any, battery: str) -> dict[str, str]:
    """The label each case's verdict must show, from the outputs and the scripted judge alone: a tie where both
    columns answered the same (not asked) and on the first case asked (garbage), lora everywhere else."""
    answers = {(s.case, s.adapter): s.answer.strip() for s in results.samples if s.battery == battery}
    cases = [s.case for s in results.samples if s.battery == battery and s.adapter == "lora"]
    differing = [c for c in cases if answers[(c, "lora")] != answers[(c, "base")]]
    return {c: "tie" if c not in differing or c == differing[0] else "lora" for c in cases}


def test_parts_list_the_judge_part() -> None:
    assert "judge" in BATTERY_PARTS and "judge" in TEN_PARTS


def test_html_shows_win_tie_loss_and_verdicts_next_to_answers(tmp_path: Path) -> None:
    path, results = _judged(tmp_path)
    out = tmp_path / "r.html"
    model = build_report([path], output=out)
    ten = model.ten
    assert ten is not None and len(ten.judged) == 1
    view = ten.judged[0]
    s = view.summary
    decided = s.a_wins + s.b_wins
    assert (s.unparseable, s.b_wins) == (1, 0) and s.a_wins == s.n - s.identical - 1
    assert (s.share_low, s.share_high) == wilson_interval(s.a_wins, decided)
    html = out.read_text()
    doc = parse(html)
    assert "<script>alert(1)</script>" not in html  # the judge's text is escaped
    head = " ".join(doc.texts["judge-head"])
    assert "Judged by judge-x" in head and f"lora {s.a_wins} · tie {s.ties} · base 0" in head
    assert f"{s.a_wins}/{decided} decided" in head
    table = next(t for t in doc.tables if "judged" in t.classes and t.section == "battery-llama32-ten")
    assert table.rows[0].texts[2:5] == ["lora", "base", "verdict"]
    samples = {(x.case, x.adapter): x for x in results.samples if x.battery == "llama32-ten"}
    winners = _winners(results, "llama32-ten")
    assert {"tie", "lora"} <= set(winners.values())
    for row in table.rows[1:]:
        case, _prompt, a, b, verdict = row.texts
        assert a.strip() == samples[(case, "lora")].output.strip()[:1500].strip()
        assert b.strip() == samples[(case, "base")].output.strip()[:1500].strip()
        assert verdict.startswith(winners[case]), (case, verdict)
    assert len(table.rows) - 1 == len(winners)


@pytest.mark.parametrize("battery", ["llama32-ten", "uppercase-echo"])
def test_markdown_shows_the_same_per_battery(tmp_path: Path, battery: str) -> None:
    path, results = _judged(tmp_path)
    md_path = tmp_path / "r.md"
    model = build_report([path], markdown=md_path)
    md = md_path.read_text()
    view = next(b for b in model.all_batteries if b.name == battery).judged[0]
    assert f"**{view.headline}**" in md and "<script>" not in md
    _, body = next((h, b) for h, b in md_tables(md) if h.startswith("| case | prompt | lora | base | verdict")
                        and any(md_cells(line)[0] == view.rows[0].case for line in b))
    assert len(body) == len(view.rows)
    shown = {md_cells(line)[0]: md_cells(line)[4] for line in body}
    winners = _winners(results, battery)
    assert set(shown) == set(winners)
    assert all(shown[case].startswith(f"**{w}**") for case, w in winners.items()), shown


def test_files_without_judgements_have_no_judge_part(tmp_path: Path) -> None:
    results = factory.make_results([("base", "base", 0.2), ("lora", "adapter", 0.9)], 0)
    path = tmp_path / "plain.json"
    write_results(results, path)
    out = tmp_path / "p.html"
    model = build_report([path], output=out, markdown=tmp_path / "p.md")
    assert all(not b.judged for b in model.all_batteries)
    assert "Judged by" not in out.read_text() and "Judged by" not in (tmp_path / "p.md").read_text()
