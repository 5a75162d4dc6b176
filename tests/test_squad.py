"""The SQuAD v1.1 metric: the shipped ``evaluate`` module, the ``squad`` scorer and ``evalsuite score squad`` must
agree with the official v1.1 script to the last digit. The reference here is re-derived independently from the
published rules (lower-case, drop ASCII punctuation, drop the words a/an/the, collapse whitespace; token F1; max
over gold answers; 100 * sum / total over every question) with different code than the module's."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run_cli

from evalsuite.probe.batteries import load_battery
from evalsuite.probe.scorers import Output, make_scorer
from evalsuite.results.aggregate import compute_metrics
from evalsuite.results.schema import Sample, ScorerRef

_DROP_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLE = re.compile(r"(?<!\w)(?:a|an|the)(?!\w)")


def ref_normalise(text: str) -> str:
    text = _ARTICLE.sub(" ", text.lower().translate(_DROP_PUNCT))
    return re.sub(r"\s+", " ", text).strip()


def ref_f1(pred: str, gold: str) -> float:
    p, g = ref_normalise(pred).split(), ref_normalise(gold).split()
    counts: dict[str, int] = {}
    for tok in g:
        counts[tok] = counts.get(tok, 0) + 1
    same = 0
    for tok in p:
        if counts.get(tok, 0) > 0:
            counts[tok] -= 1
            same += 1
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def ref_scores(questions: list[tuple[str, list[str]]], preds: dict[str, str]) -> dict[str, float]:
    em = 0
    f1 = 0.0
    for qid, golds in questions:
        if qid not in preds:
            continue
        em += max(ref_normalise(preds[qid]) == ref_normalise(g) for g in golds)
        f1 += max(ref_f1(preds[qid], g) for g in golds)
    return {"exact_match": 100.0 * em / len(questions), "f1": 100.0 * f1 / len(questions)}


@pytest.fixture(scope="module")
def dev(shared_fixtures: Path) -> tuple[Path, list[tuple[str, list[str]]], list[str]]:
    path = shared_fixtures / "datasets" / "squad" / "dev-v1.1.json"
    if not path.is_file():
        pytest.skip(f"SQuAD dev set not found at {path}")
    data = json.loads(path.read_text(encoding="utf-8"))
    questions, contexts = [], []
    for article in data["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                questions.append((qa["id"], [a["text"] for a in qa["answers"]]))
                contexts.append(para["context"])
    assert len(questions) == 10570
    return path, questions, contexts


def perturbed(questions: list[tuple[str, list[str]]], contexts: list[str]) -> dict[str, str]:
    """Deterministic predictions of every kind the normalisation and F1 treat differently."""
    preds: dict[str, str] = {}
    for i, (qid, golds) in enumerate(questions):
        gold = golds[i % len(golds)]
        kind = i % 9
        if kind == 0:
            preds[qid] = gold
        elif kind == 1:
            preds[qid] = f"The {gold.upper()}!!"
        elif kind == 2:
            preds[qid] = " ".join(gold.split()[1:])
        elif kind == 3:
            preds[qid] = f"{gold} {contexts[i][:40]}"
        elif kind == 4:
            preds[qid] = ""
        elif kind == 5:
            preds[qid] = questions[(i + 7) % len(questions)][1][0]
        elif kind == 6:
            preds[qid] = f"an  {gold}\t a, the."
        elif kind == 7:
            preds[qid] = gold.replace(" ", "-")
        # kind 8: no prediction at all (scores 0, still counted in the total)
    return preds


def score_cli(dataset: Path, preds: dict[str, str], tmp: Path) -> tuple[int, str, str]:
    pfile = tmp / "preds.json"
    pfile.write_text(json.dumps(preds), encoding="utf-8")
    proc = run_cli("score", "squad", "--dataset", dataset, "--predictions", pfile, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.slow
def test_cli_gold_answers_score_100_and_perturbed_match_reference_exactly(dev: Any, tmp_path: Path) -> None:
    path, questions, contexts = dev
    rc, out, err = score_cli(path, {qid: golds[0] for qid, golds in questions}, tmp_path)
    assert rc == 0, err
    assert json.loads(out) == {"exact_match": 100.0, "f1": 100.0}
    preds = perturbed(questions, contexts)
    rc, out, err = score_cli(path, preds, tmp_path)
    assert rc == 0, err
    got = json.loads(out)
    want = ref_scores(questions, preds)
    assert got == want  # to the last digit, as printed by json.dumps
    assert 20 < got["exact_match"] < 60 and got["f1"] > got["exact_match"]
    assert "without a prediction" in err


@pytest.mark.slow
def test_evaluate_module_loads_offline_from_its_folder(dev: Any) -> None:
    from evalsuite.metrics import SQUAD_V11_DIR, load_squad_v11

    _, questions, contexts = dev
    sub = questions[:500]
    preds = perturbed(sub, contexts[:500])
    metric = load_squad_v11()
    assert (SQUAD_V11_DIR / "squad_v11.py").is_file()
    got = metric.compute(predictions=[{"id": q, "prediction_text": preds.get(q)} for q, _ in sub],
                         references=[{"id": q, "answers": {"text": g, "answer_start": [0] * len(g)}} for q, g in sub])
    assert got == ref_scores(sub, preds)


def test_scorer_and_metric_rows_agree_with_reference_on_the_battery_sample(dev: Any) -> None:
    """The probe path (per-case scorer + metric rows) gives the official numbers for the sampled questions."""
    path, questions, contexts = dev
    battery = load_battery(Path(__file__).resolve().parents[1] / "probes" / "squad.yaml",
                           {"dataset": str(path), "n": 200})
    assert len(battery.cases) == 200
    order = {qid: i for i, (qid, _) in enumerate(questions)}
    assert [order[c.id] for c in battery.cases] == sorted(order[c.id] for c in battery.cases)  # dataset order
    assert battery.cases[0].prompt.startswith("Read the following context and concisely answer my question. ")
    all_preds = perturbed(questions, contexts)
    samples = []
    for c in battery.cases:
        pred = all_preds.get(c.id, "")
        s = battery.scorer(c, Output(pred, "eos"))
        samples.append(Sample("squad", c.id, "a", c.prompt, pred, "eos", 1, 0.0, ScorerRef("squad"), s.passed,
                              s.score))
    rows = {m.name: m.value for m in compute_metrics(samples)}
    sub = [(c.id, c.expected) for c in battery.cases]
    want = ref_scores(sub, {c.id: all_preds.get(c.id, "") for c in battery.cases})
    assert rows["exact_match"] == want["exact_match"] and rows["f1"] == want["f1"]


@pytest.mark.parametrize(("pred", "golds", "em", "f1"), [
    ("the Denver Broncos", ["Denver Broncos"], True, 1.0),
    ("Broncos", ["Denver Broncos"], False, 2 * 1.0 * 0.5 / 1.5),
    ("Santa Clara, California", ["Levi's Stadium", "Santa Clara, California"], True, 1.0),
    ("", ["x"], False, 0.0),
    ("a an the", ["the"], True, 0.0),  # both normalise to "": equal, but no shared token
])
def test_squad_scorer_known_values(pred: str, golds: list[str], em: bool, f1: float) -> None:
    class Case:
        id, prompt, expected = "q", "question", golds

    s = make_scorer("squad")(Case(), Output(pred, "eos"))
    assert (s.passed, s.score) == (em, pytest.approx(f1))


def test_score_squad_bad_input_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "preds.json"
    bad.write_text("[1, 2]", encoding="utf-8")
    ds = tmp_path / "dev.json"
    ds.write_text(json.dumps({"version": "1.1", "data": []}), encoding="utf-8")
    from cli_helpers import call_main

    assert call_main(["score", "squad", "--dataset", str(ds), "--predictions", str(tmp_path / "nope.json")]) == 2
    assert call_main(["score", "squad", "--dataset", str(ds), "--predictions", str(bad)]) == 2
    ds.write_text('{"data": [{"title": "x"}]}', encoding="utf-8")
    bad.write_text("{}", encoding="utf-8")
    assert call_main(["score", "squad", "--dataset", str(ds), "--predictions", str(bad)]) == 2
